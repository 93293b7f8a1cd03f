package lab

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Env returns the lab's environment variables, as written to the env file.
func (l *Lab) Env() [][2]string {
	return [][2]string{
		{"LAB_DIR", l.Dir},
		{"KUBECONFIG_PRIMARY", l.Primary.Kubeconfig},
		{"KUBECONFIG_DR", l.DR.Kubeconfig},
		{"PRIMARY_API_URL", l.Primary.APIServerURL},
		{"DR_API_URL", l.DR.APIServerURL},
		{"PRIMARY_NFS_HOST", l.Primary.NFSHost},
		{"DR_NFS_HOST", l.DR.NFSHost},
		{"PRIMARY_SSH_PORT", fmt.Sprint(l.Primary.SSHPort)},
		{"DR_SSH_PORT", fmt.Sprint(l.DR.SSHPort)},
		{"PRIMARY_EXPORT_ROOT", l.Primary.ExportRoot},
		{"DR_EXPORT_ROOT", l.DR.ExportRoot},
		{"S3_ENDPOINT", l.S3Endpoint},
		{"S3_BUCKET", l.S3Bucket},
		{"S3_REGION", "us-east-1"},
		{"S3_ACCESS_KEY", l.S3AccessKey},
		{"S3_SECRET_KEY", l.S3SecretKey},
		{"LAB_SSH_KEY", l.SSHKey},
		{"LAB_KNOWN_HOSTS", l.KnownHosts},
		{"LAB_INVENTORY", l.Inventory},
	}
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (l *Lab) writeEnv() error {
	var b strings.Builder
	b.WriteString("# ocpv-dr lab environment: source this file.\n")
	for _, kv := range l.Env() {
		fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	return writeFile(l.EnvFile, []byte(b.String()), 0o600)
}

// writeInventory writes an Ansible inventory that is complete on its own:
// `ansible-playbook -i <inventory> <playbook>` needs nothing else.
func (l *Lab) writeInventory() error {
	sshArgs := fmt.Sprintf("-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o ControlMaster=auto -o ControlPersist=60s -o ControlPath=%s",
		l.KnownHosts, filepath.Join(l.Dir, "ssh", "cm-%%C"))
	vars := [][2]string{
		{"ansible_python_interpreter", "/usr/bin/python3"},
		{"ansible_ssh_private_key_file", l.SSHKey},
		{"ansible_ssh_common_args", sshArgs},
		{"ocpdr_primary_kubeconfig", l.Primary.Kubeconfig},
		{"ocpdr_dr_kubeconfig", l.DR.Kubeconfig},
		{"ocpdr_primary_nfs_server", l.Primary.NFSHost},
		{"ocpdr_primary_export_root", l.Primary.ExportRoot},
		{"ocpdr_dr_nfs_server", l.DR.NFSHost},
		{"ocpdr_dr_export_root", l.DR.ExportRoot},
		{"ocpdr_primary_ssh_port", fmt.Sprint(l.Primary.SSHPort)},
		{"ocpdr_primary_ssh_user", "root"},
		{"ocpdr_dr_ssh_port", fmt.Sprint(l.DR.SSHPort)},
		{"ocpdr_dr_ssh_user", "root"},
		{"ocpdr_ssh_key", l.SSHKey},
		{"ocpdr_known_hosts", l.KnownHosts},
		// Push direction: the primary NFS host's key to the DR NFS host (in
		// the lab both hosts accept the lab key and share one known_hosts).
		{"ocpdr_push_ssh_key", l.SSHKey},
		{"ocpdr_push_known_hosts", l.KnownHosts},
		{"ocpdr_s3_endpoint", l.S3Endpoint},
		{"ocpdr_s3_bucket", l.S3Bucket},
		{"ocpdr_s3_region", "us-east-1"},
		{"ocpdr_s3_access_key", l.S3AccessKey},
		{"ocpdr_s3_secret_key", l.S3SecretKey},
	}
	var b strings.Builder
	b.WriteString("# ocpv-dr lab inventory, written by the lab. Complete on its own.\n")
	fmt.Fprintf(&b, "[ocp_primary]\nocp-primary ansible_connection=local\n\n")
	fmt.Fprintf(&b, "[ocp_dr]\nocp-dr ansible_connection=local\n\n")
	fmt.Fprintf(&b, "[primary_nfs_server]\nprimary-nfs ansible_host=%s ansible_port=%d ansible_user=root\n\n", l.Primary.NFSHost, l.Primary.SSHPort)
	fmt.Fprintf(&b, "[dr_nfs_server]\ndr-nfs ansible_host=%s ansible_port=%d ansible_user=root\n\n", l.DR.NFSHost, l.DR.SSHPort)
	b.WriteString("[all:vars]\n")
	for _, kv := range vars {
		v := kv[1]
		if strings.ContainsAny(v, " %") {
			v = "\"" + v + "\""
		}
		fmt.Fprintf(&b, "%s=%s\n", kv[0], v)
	}
	return writeFile(l.Inventory, []byte(b.String()), 0o600)
}
