"""`python -m server.engine plan` — the engine command for a profile, for launch.sh.

`--shell` prints bash assignments that launch.sh evaluates; `--dry-run` prints the exact engine
and app commands for a person to read.
"""

import argparse
import shlex
import sys

from server.engine.profiles import ProfileError, make_plan
from server.engine.router import router_plan
from server.settings import settings_or_exit


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.engine")
    sub = parser.add_subparsers(dest="command", required=True)
    plan_cmd = sub.add_parser("plan", help="resolve the profile and print the engine command")
    plan_cmd.add_argument("--engine-python", default=sys.executable)
    plan_cmd.add_argument("--app-python", default=sys.executable)
    plan_cmd.add_argument(
        "--fit-context", action="store_true", help="h200x4: start vLLM with --max-model-len auto"
    )
    fmt = plan_cmd.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--shell", action="store_true")
    fmt.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)

    settings = settings_or_exit("launch.sh")
    try:
        plan = make_plan(settings, args.engine_python, args.fit_context)
    except ProfileError as exc:
        print(f"launch.sh: {exc}", file=sys.stderr)
        return 2

    router = router_plan(settings, args.app_python)
    if args.shell:
        print(f"ENGINE_PROFILE={shlex.quote(plan.profile)}")
        print(f"ENGINE_MAX_CONTEXT={shlex.quote(str(plan.max_context or ''))}")
        print(f"ENGINE_MODEL_DIR={shlex.quote(str(plan.model_dir or ''))}")
        print("ENGINE_ARGV=(" + " ".join(shlex.quote(a) for a in plan.argv) + ")")
        print("ENGINE_ENV=(" + " ".join(shlex.quote(f"{k}={v}") for k, v in plan.env.items()) + ")")
        print("ROUTER_ARGV=(" + " ".join(shlex.quote(a) for a in router) + ")")
        return 0

    print(f"# profile: {plan.profile}")
    for note in plan.notes:
        print(f"# {note}")
    if plan.argv:
        env = " ".join(
            shlex.quote(f"{k}={'***' if k == 'VLLM_API_KEY' else v}") for k, v in plan.env.items()
        )
        print("# engine:")
        print((env + " " if env else "") + shlex.join(plan.argv))
    if router:
        print("# router:")
        print(shlex.join(router))
    app_env = [f"WORKBENCH_PROFILE={plan.profile}"]
    if plan.max_context:
        app_env.append(f"WORKBENCH_MAX_CONTEXT={plan.max_context}")
    print("# app:")
    print(" ".join(app_env) + " " + shlex.join([args.app_python, "-m", "ui"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
