"""Point DAGSTER_HOME at this repository when a Dagster command is started in its root without one.

Loaded at interpreter start by ``prison_case_notes_dagster_home.pth`` (installed with the package), so that
``dagster-daemon run -w workspace.yaml`` in the repo root works with only the variables of design.md §1 set: Dagster
itself requires DAGSTER_HOME and would otherwise refuse to start. It does nothing when DAGSTER_HOME is set, or when
the current directory is not this project's root (it must hold this project's workspace.yaml and dagster.yaml).
"""

import os


def _point_dagster_home_at_repo_root() -> None:
    if os.environ.get("DAGSTER_HOME"):
        return
    try:
        cwd = os.getcwd()
        with open(os.path.join(cwd, "workspace.yaml"), encoding="utf-8") as workspace:
            ours = "integration.definitions" in workspace.read()
    except OSError:
        return
    if ours and os.path.isfile(os.path.join(cwd, "dagster.yaml")):
        os.environ["DAGSTER_HOME"] = cwd


_point_dagster_home_at_repo_root()
