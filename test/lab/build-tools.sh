#!/usr/bin/env bash
# Builds the lab's real control-plane parts from pinned Go modules into
# $CACHE_DIR/bin (default .cache/bin). A second run only rebuilds what changed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE_DIR=${CACHE_DIR:-$ROOT/.cache}
BIN=$CACHE_DIR/bin
mkdir -p "$BIN"
K8S_VERSION=v1.37.2
VELERO_VERSION=v1.18.3
VPKG=k8s.io/component-base/version
CPKG=k8s.io/client-go/pkg/version
LDFLAGS="-s -w -X $VPKG.gitVersion=$K8S_VERSION -X $VPKG.gitMajor=1 -X $VPKG.gitMinor=37 -X $VPKG.gitTreeState=clean \
 -X $CPKG.gitVersion=$K8S_VERSION -X $CPKG.gitMajor=1 -X $CPKG.gitMinor=37"

build() { # name dir pkg [ldflags]
  local name=$1 dir=$2 pkg=$3 ld=${4:-"-s -w"}
  local stamp="$BIN/.$name.stamp" want
  want=$(cat "$ROOT/$dir/go.mod" "$ROOT/$dir/go.sum" "$ROOT/$dir"/*.go 2>/dev/null | sha256sum | cut -c1-16)
  if [[ -x $BIN/$name && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return 0
  fi
  echo "building $name (first time takes minutes; cached in $BIN)" >&2
  # One build per tool at a time: tests that need a tool build it on demand.
  exec 9>"$BIN/.$name.lock"
  flock 9
  if [[ -x $BIN/$name && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    exec 9>&-
    return 0
  fi
  (cd "$ROOT/$dir" && go build -trimpath -ldflags "$ld" -o "$BIN/$name.tmp" "$pkg")
  mv "$BIN/$name.tmp" "$BIN/$name"
  echo "$want" > "$stamp"
  exec 9>&-
}

targets=${*:-"etcd versitygw kube-apiserver kube-controller-manager"}
for t in $targets; do
  case $t in
    etcd) build lab-etcd test/tools/etcd . ;;
    versitygw) build versitygw test/tools/s3 github.com/versity/versitygw/cmd/versitygw ;;
    kube-apiserver) build kube-apiserver test/tools/k8s k8s.io/kubernetes/cmd/kube-apiserver "$LDFLAGS" ;;
    kube-controller-manager) build kube-controller-manager test/tools/k8s k8s.io/kubernetes/cmd/kube-controller-manager "$LDFLAGS" ;;
    # Velero is built only on request (lab.StartVelero calls this script): the
    # tests that need no real Velero never pay for its build.
    velero) build velero test/tools/velero github.com/vmware-tanzu/velero/cmd/velero \
      "-s -w -X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=$VELERO_VERSION" ;;
    velero-plugin-for-aws) build velero-plugin-for-aws test/tools/velero \
      github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws ;;
    *) echo "unknown tool $t" >&2; exit 2 ;;
  esac
done
