package receiver

import (
	"bytes"
	"os"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// The kustomization's rulebook ConfigMap carries the shipped rulebook: the
// copies must not drift.
func TestDeployRulebookMatchesShipped(t *testing.T) {
	for _, f := range []string{"ocp_dr_events.yml", "vars.yml"} {
		want, err := os.ReadFile("../../rulebooks/" + f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile("../../deploy/receiver/rulebook/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("deploy/receiver/rulebook/%s differs from rulebooks/%s: copy it again", f, f)
		}
	}
}

// The Deployment runs under OpenShift's restricted-v2 SCC: non-root, no
// privilege escalation, all capabilities dropped, RuntimeDefault seccomp, no
// fixed UID.
func TestDeploymentIsRestrictedV2(t *testing.T) {
	b, err := os.ReadFile("../../deploy/receiver/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Spec struct {
			Replicas int `yaml:"replicas"`
			Template struct {
				Spec struct {
					SecurityContext struct {
						RunAsNonRoot   bool `yaml:"runAsNonRoot"`
						RunAsUser      *int `yaml:"runAsUser"`
						SeccompProfile struct {
							Type string `yaml:"type"`
						} `yaml:"seccompProfile"`
					} `yaml:"securityContext"`
					Containers []struct {
						Args            []string `yaml:"args"`
						SecurityContext struct {
							AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
							RunAsUser                *int  `yaml:"runAsUser"`
							Capabilities             struct {
								Drop []string `yaml:"drop"`
							} `yaml:"capabilities"`
						} `yaml:"securityContext"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	ps := d.Spec.Template.Spec
	if d.Spec.Replicas != 1 || !ps.SecurityContext.RunAsNonRoot || ps.SecurityContext.RunAsUser != nil || ps.SecurityContext.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("pod: %+v", ps.SecurityContext)
	}
	for _, c := range ps.Containers {
		sc := c.SecurityContext
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.RunAsUser != nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container: %+v", sc)
		}
	}
}
