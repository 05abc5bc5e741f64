"""`import aru` and `aru --help` must not import torch (the CLI starts in well under a second)."""

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_aru_does_not_import_torch():
    res = _run("import aru, sys; assert 'torch' not in sys.modules, 'torch imported'; print(aru.__version__)")
    assert res.returncode == 0, res.stderr


def test_cli_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from aru.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'torch' not in sys.modules, 'torch imported by aru --help'\n"
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr


def test_lazy_api_names_resolve_and_capture_stays_a_function():
    import aru

    for name in aru.__all__:
        assert getattr(aru, name) is not None, name
    fn = aru.capture_activations
    import aru.capture  # noqa: F401  (a submodule import must not change the public function)

    assert callable(fn) and aru.capture_activations is fn
