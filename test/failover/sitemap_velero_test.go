package failover_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
	"github.com/ocpv-dr/ocpv-dr/test/sim"
)

// TestFailoverSiteMappingVelero: a VM on a primary VLAN with fixed MACs,
// backed up by real Velero; the failover with a network map and MAC policy
// regenerate has Velero create the VM at DR already on the DR network and
// without MACs (the Restore's resource modifier), never as it was.
func TestFailoverSiteMappingVelero(t *testing.T) {
	l := lab.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	if err := l.LiftFence(ctx); err != nil { // earlier tests of this binary failed over
		t.Fatal(err)
	}
	prc, _ := l.Primary.RESTConfig()
	drc, _ := l.DR.RESTConfig()
	p, d := dynamic.NewForConfigOrDie(prc), dynamic.NewForConfigOrDie(drc)
	const ns = "vms-sitemap"
	seedVMs(ctx, t, l, p, ns, []string{"app-root"})
	setNetworks(ctx, t, p, ns, "app")

	name := "sitemap-" + time.Now().UTC().Format("20060102150405")
	lab.BackupToDR(t, l, name, []string{ns})
	go (&sim.KubeVirt{Clusters: map[string]dynamic.Interface{"primary": p, "dr": d}, Log: zaptest.NewLogger(t)}).Run(ctx, 200*time.Millisecond)

	vars := map[string]any{"backup_name": name, "dr_failover_namespaces": []string{ns}, "dr_failover_report_dir": t.TempDir(),
		"dr_failover_vm_timeout": 120, "oadp_backup_parser_prefix": lab.VeleroPrefix,
		"ocpdr_site_network_map": map[string]any{"prod/vlan100": "dr/vlan200"}, "ocpdr_site_mac_policy": "regenerate"}
	out, err := l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", vars)
	if err != nil {
		t.Fatalf("failover with a site map: %v\n%s", err, tail(out))
	}
	restores, err := d.Resource(lab.GVRVeleroRestore).Namespace(lab.VeleroNamespace).List(ctx, metav1.ListOptions{LabelSelector: "ocpv-dr.io/backup=" + name})
	if err != nil || len(restores.Items) != 1 {
		t.Fatalf("want one Restore of %s at DR, got %v (%v)", name, restores, err)
	}
	r := restores.Items[0]
	if phase, _, _ := unstructured.NestedString(r.Object, "status", "phase"); phase != "Completed" {
		t.Errorf("Restore %s is %q, want Completed (by Velero): %v", r.GetName(), phase, r.Object["status"])
	}
	if ref, _, _ := unstructured.NestedString(r.Object, "spec", "resourceModifier", "name"); ref == "" {
		t.Errorf("Restore %s has no resource modifier: %v", r.GetName(), r.Object["spec"])
	}
	vm, err := d.Resource(sim.GVRVM).Namespace(ns).Get(ctx, "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nets, _, _ := unstructured.NestedSlice(vm.Object, "spec", "template", "spec", "networks")
	ifaces, _, _ := unstructured.NestedSlice(vm.Object, "spec", "template", "spec", "domain", "devices", "interfaces")
	if len(nets) != 2 || len(ifaces) != 2 {
		t.Fatalf("DR VM networks %v interfaces %v, want 2 of each", nets, ifaces)
	}
	if got, _, _ := unstructured.NestedString(nets[1].(map[string]any), "multus", "networkName"); got != "dr/vlan200" {
		t.Errorf("DR VM's secondary network is %q, want dr/vlan200 (mapped)", got)
	}
	for _, i := range ifaces {
		if mac, ok := i.(map[string]any)["macAddress"]; ok {
			t.Errorf("DR VM interface %v kept MAC %v (policy regenerate)", i.(map[string]any)["name"], mac)
		}
	}
	// The primary's VM is as it was: the mapping applies at the restoring site only.
	pvm, err := p.Resource(sim.GVRVM).Namespace(ns).Get(ctx, "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pnets, _, _ := unstructured.NestedSlice(pvm.Object, "spec", "template", "spec", "networks")
	if got, _, _ := unstructured.NestedString(pnets[1].(map[string]any), "multus", "networkName"); got != "prod/vlan100" {
		t.Errorf("primary VM's network changed to %q", got)
	}
}

// setNetworks gives VM name a pod network and a VLAN, each interface a fixed MAC.
func setNetworks(ctx context.Context, t *testing.T, p dynamic.Interface, ns, name string) {
	t.Helper()
	rc := p.Resource(sim.GVRVM).Namespace(ns)
	vm, err := rc.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := vm.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	spec["networks"] = []any{map[string]any{"name": "default", "pod": map[string]any{}},
		map[string]any{"name": "data", "multus": map[string]any{"networkName": "prod/vlan100"}}}
	spec["domain"] = map[string]any{"devices": map[string]any{"interfaces": []any{
		map[string]any{"name": "default", "masquerade": map[string]any{}, "macAddress": "02:00:00:00:00:01"},
		map[string]any{"name": "data", "bridge": map[string]any{}, "macAddress": "02:00:00:00:00:02"}}}}
	if _, err := rc.Update(ctx, vm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
