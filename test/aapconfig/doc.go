// Package aapconfig tests playbooks/aap/configure_controller.yml against the
// project's fake Automation Controller (pkg/aap/aaptest, configuration-store
// contract), so the test can check what the playbook creates, that a second
// run changes nothing and that --check writes nothing. It needs
// ansible-playbook and the awx.awx collection, not the lab.
package aapconfig
