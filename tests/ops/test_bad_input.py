"""Every subcommand against every class of bad input: a non-zero exit, one line naming the input and the fix, no
traceback, and no file touched that the command did not write."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURE_STACKS, ROOT, Cli

STACK = (FIXTURE_STACKS / "Pulumi.dev.yaml").read_text()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project (program, components, stack files) with some inputs a careless user would make."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root)
    shutil.copy(ROOT / "__main__.py", root)
    (root / "components").symlink_to(ROOT / "components")
    stacks = root / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.dev.yaml").write_text(STACK)
    (stacks / "Pulumi.empty.yaml").write_text("")
    (stacks / "Pulumi.scalar.yaml").write_text("just text\n")
    (stacks / "Pulumi.unclosed.yaml").write_text("config:\n  llm-mesh:gcp: [unclosed\n")
    (stacks / "Pulumi.typo.yaml").write_text(STACK.replace("llm-mesh:models:", "llm-mes:models:"))
    (stacks / "Pulumi.confg.yaml").write_text(STACK.replace("config:", "confg:", 1))
    (stacks / "Pulumi.newer.yaml").write_text(
        STACK.replace("llm-mesh:cluster:\n", "llm-mesh:cluster:\n    kubernetesVersion: '1.40'\n")
    )
    (stacks / "Pulumi.twice.yaml").write_text(
        STACK.replace("    region: us-central1\n", "    region: us-central1\n    region: us-east1\n", 1)
    )
    (stacks / "Pulumi.utf16.yaml").write_bytes(STACK.encode("utf-16"))
    (stacks / "Pulumi.region.yaml").write_text(STACK.replace("region: us-central1", "region: europe-west99"))
    models = STACK.index("  llm-mesh:models:")
    (stacks / "Pulumi.modelless.yaml").write_text(STACK[:models] + STACK[STACK.index("  llm-mesh:observability:") :])
    (stacks / "Pulumi.noenv.yaml").write_text(STACK.replace("  llm-mesh:environment: dev\n", ""))
    (stacks / "Pulumi.plain2.yaml").write_text(
        STACK.replace(
            "config:\n",
            "config:\n  llm-mesh:modelStore:\n    s3:\n      accessKeyId: AKIAEXAMPLE\n"
            "      secretAccessKey: wJalrXUtnFEMI/K7MDENG\n",
        )
    )
    (stacks / "Pulumi.zone.yaml").write_text(STACK.replace("zones: [us-central1-a]", "zones: us-central1-a"))
    (stacks / "Pulumi.cidr.yaml").write_text(STACK.replace("cidrBlock: 203.0.113.0/24", "cidrBlock: 203.0.113.0/33"))
    (stacks / "Pulumi.plain.yaml").write_text(
        STACK.replace(
            "config:\n",
            "config:\n  llm-mesh:modelStore:\n    s3:\n      accessKeyId:\n        secure: v1:abc\n"
            "      secretAccessKey: wJalrXUtnFEMI/K7MDENG\n",
            1,
        )
    )
    (root / "doc.json").write_text(json.dumps({"steps": []}))
    prices = {"date": "2026-11-01", "currency": "USD", "region": "us-central1"}
    (root / "prices-no-spot.json").write_text(
        json.dumps({**prices, "machineTypes": {"g2-standard-8": {"onDemand": 0.85}}})
    )
    (root / "prices-text.json").write_text(
        json.dumps({**prices, "machineTypes": {"g2-standard-8": {"onDemand": "cheap", "spot": 0.3}}})
    )
    (root / "empty.json").write_text("")
    (root / "shape.json").write_text(json.dumps({"steps": [1, 2]}))
    (root / "yaml.json").write_text("steps:\n  - op: create\n")
    (root / "policy-typo.json").write_text(json.dumps({"istio-namespace-injecton": "mandatory"}))
    (root / "policy-level.json").write_text(json.dumps({"istio-namespace-injection": "advisry"}))
    (root / "policy-advisory.json").write_text(json.dumps({"istio-namespace-injection": "advisory"}))
    (root / "mine").mkdir()
    (root / "mine" / "kustomization.yaml").write_text("resources:\n- app.yaml\n")
    (root / "mine" / "app.yaml").write_text("kind: ConfigMap\n")
    (root / "a-file").write_text("not a folder\n")
    (root / "look-alike").mkdir()
    (root / "look-alike" / "002-namespace-inference.yaml").write_text("# my own notes\n")
    return root


def tree(root: Path) -> dict[str, str]:
    """Every file under the project with its sha256 (what must not change)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "components" not in p.parts
    }


CASES = [
    # (case, arguments, what the one line says)
    ("missing stack file", ["preview", "--stack", "qa"], "Pulumi.qa.yaml: no such stack file (stacks here: cidr, confg, dev, empty, modelless, newer, noenv, plain, plain2, region, scalar, twice, typo, unclosed, utf16, zone)"),
    ("a secret in plain text", ["preview", "--stack", "plain"], "Pulumi.plain.yaml: llm-mesh:modelStore.s3.secretAccessKey is written in plain text in a file that is committed: set it with `pulumi config set --secret --path 'llm-mesh:modelStore.s3.secretAccessKey' VALUE`"),
    ("a key given twice", ["preview", "--stack", "twice"], "Pulumi.twice.yaml:7:5: key 'region' given twice (first at line 6); Pulumi refuses a stack file with a duplicate key"),
    ("a stack file saved as UTF-16", ["validate", "--stack", "utf16"], "Pulumi.utf16.yaml: not UTF-8 text; save it as UTF-8"),
    ("a CIDR block that is no network", ["preview", "--stack", "cidr"], "cidrBlock = '203.0.113.0/33': not an IPv4 network"),
    ("stack given as its file", ["preview", "--stack", "stacks/Pulumi.dev.yaml"], "--stack stacks/Pulumi.dev.yaml names a file; it takes the stack's name: use --stack dev"),
    ("misspelled stack", ["render", "--stack", "dve", "--out", "out"], "Pulumi.dve.yaml: no such stack file (did you mean 'dev'? stacks here:"),
    ("wrong shape stack file", ["preview", "--stack", "scalar"], "Pulumi.scalar.yaml: a YAML mapping was expected, found str"),
    ("unparseable stack file", ["render", "--stack", "unclosed", "--out", "out"], "Pulumi.unclosed.yaml:3:1: not valid YAML"),
    ("empty stack file", ["preview", "--stack", "empty"], "Pulumi.empty.yaml: llm-mesh:*: the stack sets no llm-mesh config; a stack states at least llm-mesh:environment (dev, staging or prod), llm-mesh:gcp.project and a model under llm-mesh:models: start from a copy of stacks/Pulumi.dev.yaml"),
    ("a region GKE does not have", ["preview", "--stack", "region"], "Pulumi.region.yaml: llm-mesh:gcp.region = 'europe-west99': not a GCP region GKE runs in; did you mean 'europe-west9'? (`gcloud compute regions list` shows them; one opened since goes in llm_mesh/plan/gcp_regions.json)"),
    ("a stack with no model", ["validate", "--stack", "modelless"], "Pulumi.modelless.yaml: llm-mesh:models: no model to serve: add one under llm-mesh:models (its name, shape, contextLength and stable version with its files; the README's \"Making your own stack\" shows one)"),
    ("two secrets in plain text, both named at once", ["validate", "--stack", "plain2"], "Pulumi.plain2.yaml: llm-mesh:modelStore.s3.accessKeyId, llm-mesh:modelStore.s3.secretAccessKey are written in plain text in a file that is committed: set each with `pulumi config set --secret --path 'llm-mesh:modelStore.s3.accessKeyId' VALUE` (and so on) (Pulumi keeps it encrypted), or use modelStore.s3.roleArn instead of keys; and rotate what was written down"),
    ("zones as one word, not a list", ["preview", "--stack", "zone"], "Pulumi.zone.yaml: llm-mesh:gcp.zones = 'us-central1-a': write a list, e.g. [us-central1-a]"),
    ("a stack that never says its environment", ["policy", "--stack", "noenv"], "Pulumi.noenv.yaml: llm-mesh:environment: required key is missing; say which environment this stack is: dev, staging or prod (prod is held to prod's rules: HTTPS, images pinned by digest, alerts that notify someone)"),
    ("misspelled namespace", ["preview", "--stack", "typo"], "llm-mes:models: unknown config namespace 'llm-mes'"),
    ("misspelled stack-file key", ["validate", "--stack", "confg"], "unknown top-level key 'confg': did you mean 'config'?"),
    ("output folder missing", ["preview", "--stack", "dev", "--json", "no/such/folder/out.json"], "folder no/such/folder does not exist"),
    ("output folder holds other files", ["render", "--stack", "dev", "--out", "mine"], "mine: holds files `llm-mesh render` did not write"),
    ("output is a file", ["render", "--stack", "dev", "--out", "a-file"], "a-file: not a folder"),
    ("overwrite onto a look-alike file", ["render", "--stack", "dev", "--out", "look-alike", "--overwrite"], "look-alike/002-namespace-inference.yaml: a file `llm-mesh render` did not write has the name of one it would write (1 such)"),
    ("export file missing", ["render", "--stack", "dev", "--out", "out", "--from", "missing.json"], "engine document missing.json: no such file; check the path"),
    ("document missing", ["validate", "missing.json"], "engine document missing.json: no such file; check the path"),
    ("document empty", ["policy", "empty.json"], "engine document empty.json: not JSON (Expecting value: line 1 column 1 (char 0)); write it with `pulumi preview --json`"),
    ("document of the wrong shape", ["validate", "shape.json"], "shape.json: steps[0] is int 1; an object with `op` and `newState` was expected"),
    ("document of the wrong shape", ["policy", "shape.json"], "shape.json: steps[0] is int 1; an object with `op` and `newState` was expected"),
    ("YAML where JSON is expected", ["validate", "yaml.json"], "engine document yaml.json: not JSON (Expecting value: line 1 column 1 (char 0))"),
    ("unsupported version", ["validate", "--stack", "dev", "--kubernetes-version", "1.40"], "Kubernetes 1.40: no schemas installed for it"),
    ("unsupported version from config", ["validate", "--stack", "newer"], "Kubernetes 1.40: no schemas installed for it"),
    ("misspelled policy config", ["policy", "--stack", "dev", "--config", "policy-typo.json"], "istio-namespace-injecton: no rule of that name; did you mean 'istio-namespace-injection'?"),
    ("misspelled policy level", ["policy", "--stack", "dev", "--config", "policy-level.json"], "policy-level.json: istio-namespace-injection: enforcement level 'advisry' is not one of ['advisory', 'disabled', 'mandatory', 'remediate']; did you mean 'advisory'?"),
    ("policy level the environment refuses", ["policy", "--stack", "dev", "--env", "prod", "--config", "policy-advisory.json"], "policy-advisory.json: istio-namespace-injection: advisory is allowed in dev only; prod keeps it mandatory"),
    ("policy config missing", ["policy", "--stack", "dev", "--config", "nope.json"], "policy config nope.json: no such file; check the path"),
    ("models: missing stack", ["models", "verify", "--stack", "qa"], "Pulumi.qa.yaml: no such stack file"),
    ("prices without spot", ["diff", "doc.json", "doc.json", "--prices", "prices-no-spot.json"], "price table prices-no-spot.json: machineTypes.g2-standard-8.spot = None: a price per node-hour (a number) is needed"),
    ("a price that is no number", ["diff", "doc.json", "doc.json", "--prices", "prices-text.json"], "machineTypes.g2-standard-8.onDemand = 'cheap': a price per node-hour (a number) is needed"),
    ("push: missing folder", ["models", "push", "--stack", "dev", "--model", "llama-31-8b", "--version", "v1", "no-such-dir"], "no-such-dir: no such folder"),
    ("push: missing folder said first", ["models", "push", "--stack", "dev", "--model", "llama-31-8b", "--version", "v9", "no-such-dir", "--to", "nowhere"], "DIR no-such-dir: no such folder"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "args", "says"), CASES, ids=[f"{c[0]}: {c[1][0]}" for c in CASES])
def test_bad_input_is_one_line_and_touches_nothing(
    project: Path, cli: Cli, case: str, args: list[str], says: str
) -> None:
    before = tree(project)
    result = cli("--project", str(project), *args, cwd=project)
    assert result.returncode == 2, f"{case}: exit {result.returncode}\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: {result.stderr}"
    assert says in lines[0], f"{case}: {lines[0]}"
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == "", f"{case}: a refusal prints nothing else"
    assert tree(project) == before, f"{case}: a file changed"


def test_no_credentials_is_one_line(project: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Google application default credentials: one line saying how to get them, before any file is read."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # not on a GCE VM: do not wait for its metadata server
    result = cli("--project", str(project), "models", "verify", "--stack", "dev", cwd=project)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: gs://llm-mesh-dev-dev-models: no Google credentials; run `gcloud auth application-default login` "
        "or set GOOGLE_APPLICATION_CREDENTIALS"
    ]


def test_a_config_mistake_names_every_key_and_exits_2(project: Path, cli: Cli) -> None:
    stacks = project / "stacks"
    broken = STACK.replace("g2-standard-8", "n2-standard-8").replace("contextLength: 8192", "contextLength: 8k")
    (stacks / "Pulumi.broken.yaml").write_text(broken)
    result = cli("--project", str(project), "preview", "--stack", "broken", cwd=project)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: stacks/Pulumi.broken.yaml: llm-mesh:gpuPools[0].machineType = 'n2-standard-8': nvidia-l4 needs a "
        "g2-standard-* machine type (g2-standard-4, g2-standard-8, g2-standard-12, g2-standard-16, g2-standard-24, "
        "g2-standard-32, g2-standard-48, g2-standard-96)",
        "error: stacks/Pulumi.broken.yaml: llm-mesh:models[0].contextLength = '8k': write a whole number, e.g. 8192",
    ]


def test_validate_on_a_partial_preview_says_what_it_cannot_judge(previews: dict, cli: Cli, tmp_path: Path) -> None:
    """`pulumi preview --json` without --show-sames lists what changes: whole-plan codes are not judged on it."""
    changed = [dict(step, op="update") for step in previews["prod"]["steps"] if "VirtualService" in step["urn"]]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"steps": changed}))
    result = cli("validate", str(partial))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "not judged (a preview that lists only what changes): LM0101, LM0102, LM0103, LM0106, LM0107, LM0110, "
        "LM0113, LM0114, LM0115, LM0116, LM0118, LM0123, LM0124, LM0126, LM0127, LM0128, LM0129, LM0130, LM0131; write it with `pulumi preview --json --show-sames`, or use "
        "`pulumi stack export`"
    )
    assert lines[-1].endswith("0 errors, 0 warnings")


def test_render_from_an_export_writes_the_values_only_a_deployment_knows(
    previews: dict, cli: Cli, tmp_path: Path
) -> None:
    prod = previews["prod"]
    email = "llm-mesh-prod-prod-m-read-c3ff@llm-mesh-prod.iam.gserviceaccount.com"
    resources = []
    for step in prod["steps"]:
        state = json.loads(json.dumps(step["newState"]))
        if step["urn"].endswith("ServiceAccount::models-ksa"):
            state["inputs"]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] = email
        resources.append(state)
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"version": 3, "deployment": {"resources": resources}}))
    plain = cli("render", "--stack", "prod", "--out", str(tmp_path / "plain"))
    assert (
        "  left out, known only after deployment: ServiceAccount/model-store/model-store "
        "metadata.annotations.iam.gke.io/gcp-service-account"
    ) in plain.stdout.splitlines()
    rendered = (tmp_path / "plain").glob("*serviceaccount-model-store-model-store.yaml")
    text = next(rendered).read_text()
    assert "04da6b54" not in text and "iam.gke.io/gcp-service-account" not in text
    filled = cli("render", "--stack", "prod", "--out", str(tmp_path / "filled"), "--from", str(export))
    assert filled.returncode == 0, filled.stderr
    text = next((tmp_path / "filled").glob("*serviceaccount-model-store-model-store.yaml")).read_text()
    assert f"iam.gke.io/gcp-service-account: {email}" in text


def test_a_relative_project_folder_is_found_from_where_the_command_runs(project: Path, cli: Cli) -> None:
    """The program runs from the project's folder: a relative --project must not be taken from there again."""
    result = cli("--project", project.name, "preview", "--stack", "dev", cwd=project.parent)
    assert result.returncode == 0, result.stderr


def test_the_project_folder_may_follow_the_command(project: Path, cli: Cli, tmp_path: Path) -> None:
    """Where a newcomer puts it: after the command's own arguments, and it wins over one before the command."""
    result = cli("--project", str(tmp_path), "policy", "--stack", "nosuch", "--project", str(project), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {project}/stacks/Pulumi.nosuch.yaml: no such stack file (stacks here: cidr, ")


def test_an_endpoint_without_its_scheme_is_refused_before_anything_runs(project: Path, cli: Cli) -> None:
    result = cli("--project", str(project), "models", "verify", "--stack", "dev", "--s3-endpoint-url", "localhost:5055")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        "argument --s3-endpoint-url: 'localhost:5055': a URL with its scheme, e.g. http://localhost:5055"
    )
