// Lane keys: which resource an event is about, so that its jobs run in order.

package dispatch

import (
	"fmt"
	"path"
	"strings"
)

// LaneKey names the resource an event is about, so that actions for it run one
// at a time and in order. A PersistentVolume backed by NFS (spec.nfs, or
// spec.csi of csi-driver-nfs) is keyed by its server and directory, so events
// about the same directory share a lane whatever their kind; a body carrying
// {"nfs": {"server", "path"}}, or a forwarder NFSDirectory event (a
// data-change notice, resource {server, path}), joins that lane too. Any
// other Kubernetes object is keyed by cluster, kind, namespace and name. An
// event that names no object returns "" (no ordering constraint).
//
// The event may be an EDA webhook event ({payload, meta}), a forwarder body
// ({kind, cluster, resource}) or a bare Kubernetes object.
func LaneKey(event map[string]any) string {
	body := event
	if p, ok := event["payload"].(map[string]any); ok {
		body = p
	}
	if nfs, ok := body["nfs"].(map[string]any); ok {
		if k := nfsKey(str(nfs["server"]), str(nfs["path"])); k != "" {
			return k
		}
	}
	obj := body
	if r, ok := body["resource"].(map[string]any); ok {
		obj = r
	}
	kind := str(obj["kind"])
	if kind == "" {
		kind = str(body["kind"])
	}
	md, _ := obj["metadata"].(map[string]any)
	name, ns := str(md["name"]), str(md["namespace"])
	if kind == "NFSDirectory" { // pkg/event data-change notice: resource {server, path}
		if k := nfsKey(str(obj["server"]), str(obj["path"])); k != "" {
			return k
		}
	}
	if kind == "PersistentVolume" {
		if k := pvNFSKey(obj); k != "" {
			return k
		}
	}
	if kind == "" || name == "" {
		return ""
	}
	return fmt.Sprintf("%s/%s/%s/%s", str(body["cluster"]), kind, ns, name)
}

func pvNFSKey(pv map[string]any) string {
	spec, _ := pv["spec"].(map[string]any)
	if nfs, ok := spec["nfs"].(map[string]any); ok {
		return nfsKey(str(nfs["server"]), str(nfs["path"]))
	}
	if csi, ok := spec["csi"].(map[string]any); ok {
		attrs, _ := csi["volumeAttributes"].(map[string]any)
		share := str(attrs["share"])
		if sub := str(attrs["subdir"]); sub != "" {
			share = share + "/" + sub
		}
		return nfsKey(str(attrs["server"]), share)
	}
	return ""
}

func nfsKey(server, dir string) string {
	if server == "" || dir == "" {
		return ""
	}
	return "nfs:" + strings.ToLower(server) + ":" + path.Clean("/"+dir)
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
