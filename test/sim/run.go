package sim

import (
	"context"
	"time"

	"github.com/minio/minio-go/v7"
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
)

// Sites are the lab's two clusters and the S3 bucket the simulated Velero
// reads backups from.
type Sites struct {
	Primary, DR dynamic.Interface
	S3          *minio.Client
	Bucket      string
	Prefix      string
	// Guests, when set, runs the simulated guests of the primary's VMs that
	// opt in (see AnnotationGuest; StartGuestAPI makes one with the
	// freeze/unfreeze API). They stop when RunControllers returns.
	Guests *Guests
}

// RunControllers runs the simulated Velero (restores at DR) and KubeVirt (VM
// status at both sites) every interval until ctx ends, and returns then.
func RunControllers(ctx context.Context, s Sites, interval time.Duration, log *zap.Logger) {
	v := &Velero{DR: s.DR, S3: s.S3, Bucket: s.Bucket, Prefix: s.Prefix, Log: log.Named("velero")}
	k := &KubeVirt{Clusters: map[string]dynamic.Interface{"primary": s.Primary, "dr": s.DR}, Log: log.Named("kubevirt"), Guests: s.Guests}
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Run(ctx, interval)
	}()
	k.Run(ctx, interval)
	<-done
}
