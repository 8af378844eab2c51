import shutil

import pytest

from tests.faults.stack import PG_BIN, Stack
from tests.faults.traffic import Traffic
from tests.helpers import tmpfs_mounted


@pytest.fixture(scope="module")
def stack(artifacts, tmp_path_factory):
    """The production layout as real processes, with media on a 160 MiB tmpfs (room for
    the uploads and their overlays, which are PNGs at the upload's own size)."""
    missing = [tool for tool in ("redis-server", "runuser") if shutil.which(tool) is None]
    if missing or not PG_BIN:
        pytest.skip(f"the fault suite needs {missing or 'the PostgreSQL server binaries'}")
    root = tmp_path_factory.mktemp("faults")
    with tmpfs_mounted(root / "media", size="160m") as media:
        built = Stack(root=root, media=media, artifacts=artifacts)
        try:
            built.up()
            yield built
        finally:
            built.down()


@pytest.fixture(scope="module")
def traffic(stack) -> Traffic:
    (team_id,) = stack.sql("SELECT id FROM accounts_team WHERE name = 'Ward'")[0]
    return Traffic(stack, team_id)


@pytest.fixture(scope="module")
def measured(request):
    """Recovery times, printed at the end of the run whatever pytest captures."""
    lines: list[str] = []
    yield lines
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not lines:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(f"fault suite: {line}")
