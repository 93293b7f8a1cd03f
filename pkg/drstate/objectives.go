package drstate

// Recovery point objectives by configuration: per VM ("namespace/name") and
// per namespace, below a volume's own ocpv-dr.io/rpo annotation and above
// the default. Precedence: the PV's annotation (or its report entry's rpo) >
// the strictest objective of the VMs that use it > its namespace > default.

import (
	"fmt"
	"strings"
	"time"
)

// Objectives are the configured recovery point objectives.
type Objectives struct {
	Default    time.Duration            // volumes without any other objective; 0: none
	Namespaces map[string]time.Duration // namespace -> objective
	VMs        map[string]time.Duration // "namespace/vm" -> objective
}

// ParseObjectives parses "key=duration" items (as the receiver's
// --rpo-namespace and --rpo-vm flags give them) into a map; vmKeys requires
// keys of the form namespace/name.
func ParseObjectives(items []string, vmKeys bool) (map[string]time.Duration, error) {
	out := make(map[string]time.Duration, len(items))
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("drstate: objective %q is not key=duration (vms=30m, vms/db=15m)", it)
		}
		if ns, name, slash := strings.Cut(k, "/"); vmKeys && (!slash || ns == "" || name == "" || strings.Contains(name, "/")) {
			return nil, fmt.Errorf("drstate: VM objective %q: the VM must be namespace/name", it)
		} else if !vmKeys && slash {
			return nil, fmt.Errorf("drstate: namespace objective %q: a namespace has no '/'", it)
		}
		d, err := ParseRPO(v)
		if err != nil {
			return nil, err
		}
		if d <= 0 {
			return nil, fmt.Errorf("drstate: objective %q must be positive", it)
		}
		out[k] = d
	}
	return out, nil
}

// objective returns the objective of v in seconds (0: none) and where it
// comes from: annotation, vm, namespace or default.
func (o Objectives) objective(v *Volume) (float64, string) {
	if v.RPOSeconds > 0 {
		return v.RPOSeconds, "annotation"
	}
	var best time.Duration
	for _, vm := range v.VMs {
		if d, ok := o.VMs[vm]; ok && (best == 0 || d < best) {
			best = d
		}
	}
	if best > 0 {
		return best.Seconds(), "vm"
	}
	if d, ok := o.Namespaces[v.Namespace]; ok && v.Namespace != "" {
		return d.Seconds(), "namespace"
	}
	if o.Default > 0 {
		return o.Default.Seconds(), "default"
	}
	return 0, ""
}
