"""``tvm logs``: the logs of every part, local or deployed (Lima, Kubernetes)."""

from __future__ import annotations

import contextlib
import subprocess

import click

from tvm.config.settings import Settings
from tvm.pyrolima.commands import Runner
from tvm.pyrolima.logs import COMPONENTS, Kubernetes, Lima, Target, commands


@click.command()
@click.option(
    "--component",
    type=click.Choice(COMPONENTS),
    default="tvm",
    show_default=True,
    help="api: the gateway; tvm: the workers; lima: the Lima VM; k8s: the cluster's "
    "events and system pods; istio: Istio's control plane, ingress and sidecars",
)
@click.option("--follow", "-f", is_flag=True, help="keep printing new lines")
@click.option("--lines", "-n", type=click.IntRange(0), default=100, show_default=True)
@click.option("--lima", "use_lima", is_flag=True, help="read the deployment in the Lima VM")
@click.option("--instance", default="tvm", show_default=True, help="the Lima instance")
@click.option(
    "--kubeconfig", default=None, help="read a Kubernetes deployment with this kubeconfig"
)
@click.option("--context", default=None, help="read a Kubernetes deployment in this context")
@click.option("--debug", is_flag=True, help="print each command before it runs")
def logs(
    component: str,
    follow: bool,
    lines: int,
    use_lima: bool,
    instance: str,
    kubeconfig: str | None,
    context: str | None,
    debug: bool,
) -> None:
    """Print the logs of a component.

    api and tvm come from the local service (`tvm start`) unless --lima, --kubeconfig or
    --context names a deployment; lima, k8s and istio always come from one (the Lima
    instance unless --kubeconfig or --context is given).
    """
    runner = Runner(debug=debug)
    kube = kubeconfig is not None or context is not None
    if component in ("api", "tvm") and not (use_lima or kube):
        _local(component, follow, lines, runner)
        return
    if kube and use_lima:
        raise click.UsageError("--lima and --kubeconfig/--context name different deployments")
    if component == "lima" and kube:
        raise click.UsageError(
            "--component lima reads a Lima instance: drop --kubeconfig/--context"
        )
    target: Target = Kubernetes(kubeconfig, context) if kube else Lima(instance)
    runner.stream(commands(component, target, lines, follow), follow)


def _local(component: str, follow: bool, lines: int, runner: Runner) -> None:
    settings = Settings()
    path = settings.logs_dir / f"{component}.log"
    if not path.exists():
        raise click.ClickException(
            f"no log at {path}: has `tvm start` run with this TVM_HOME? "
            "(for a deployment add --lima, or --kubeconfig/--context)"
        )
    argv = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(path)]
    runner.show(argv)
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(argv, check=False)


COMMANDS = [logs]
