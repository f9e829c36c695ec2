#!/bin/bash
# TVM's Lima VM: K3s + Istio + the dev overlay of deploy/k8s.
# Lima runs this as root at every boot (mode: system), so every step is idempotent:
# it installs what is missing and re-applies the manifests. Its output is in
# /var/log/cloud-init-output.log (`tvm logs --component lima`).
# Parameters (the template's `param:` section): PARAM_TVM_SOURCE (the checkout,
# mounted read-only), PARAM_TVM_VERSION, PARAM_ISTIO_VERSION, PARAM_K3S_CHANNEL.
set -eux -o pipefail
export DEBIAN_FRONTEND=noninteractive

source_dir="${PARAM_TVM_SOURCE:?}"
version="${PARAM_TVM_VERSION:?}"
istio_version="${PARAM_ISTIO_VERSION:?}"
k3s_channel="${PARAM_K3S_CHANNEL:?}"
image="tvm/pyrovm:${version}"
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) echo "unsupported architecture: $(uname -m)" >&2; exit 1 ;;
esac

if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends curl ca-certificates
fi

# 1. K3s, a single-node cluster. Traefik is off: Istio's ingress gateway takes port 80.
if ! command -v k3s >/dev/null 2>&1; then
  curl -sfL https://get.k3s.io |
    INSTALL_K3S_CHANNEL="${k3s_channel}" \
    INSTALL_K3S_EXEC="server --disable traefik --write-kubeconfig-mode 644" sh -
fi
systemctl start k3s
for _ in $(seq 1 120); do
  kubectl get nodes >/dev/null 2>&1 && break
  sleep 2
done
kubectl wait --for=condition=Ready node --all --timeout=300s

# 2. This node runs sandboxes (the pyrovm Deployment's node selector).
kubectl label node --all tvm.dev/sandbox=true --overwrite

# 3. Istio: istioctl, then the control plane and the ingress gateway.
if ! command -v istioctl >/dev/null 2>&1; then
  workdir="$(mktemp -d)"
  (cd "${workdir}" && curl -sfL https://istio.io/downloadIstio |
    ISTIO_VERSION="${istio_version}" TARGET_ARCH="${arch}" sh -)
  install -m 0755 "${workdir}/istio-${istio_version}/bin/istioctl" /usr/local/bin/istioctl
  rm -rf "${workdir}"
fi
if ! kubectl get deployment istiod -n istio-system >/dev/null 2>&1; then
  istioctl install -y --set profile=default
fi
kubectl -n istio-system rollout status deployment/istiod --timeout=600s
kubectl -n istio-system rollout status deployment/istio-ingressgateway --timeout=600s

# 4. The tvm/pyrovm image, built from the checkout into K3s's containerd (once per
#    version); a saved image at dist/tvm-pyrovm-VERSION.tar is loaded instead.
if ! k3s ctr images list --quiet | grep -qx "docker.io/${image}"; then
  saved="${source_dir}/dist/tvm-pyrovm-${version}.tar"
  if [ -f "${saved}" ]; then
    k3s ctr images import "${saved}"
  else
    if [ ! -f "${source_dir}/Dockerfile" ]; then
      echo "no Dockerfile in ${source_dir}: cannot build ${image}" >&2
      exit 1
    fi
    if ! command -v docker >/dev/null 2>&1; then
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends docker.io
    fi
    docker build -t "${image}" "${source_dir}"
    docker save "${image}" | k3s ctr images import -
  fi
fi

# 5. TVM: the dev overlay (namespace tvm, pyroshell, pyrovm, PostgreSQL, the mesh).
kubectl apply -k "${source_dir}/deploy/k8s/overlays/dev"
