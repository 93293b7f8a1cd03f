// Command forwarder is part of ocpv-dr.
package main

import (
	"fmt"

	"github.com/ocpv-dr/ocpv-dr/pkg/version"
)

func main() {
	fmt.Println("forwarder", version.Version)
}
