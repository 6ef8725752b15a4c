"""A learner's first contact, in a real browser: JupyterLab, notebook 01, its config panel.

Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) opens notebook 01 in a
JupyterLab server this test starts on 127.0.0.1 with a token. It runs the cells down to the
config panel, checks on the way that the lab's topology picture (an SVG drawn from the running
lab) rendered, types an invalid Network (the panel must show flannel's error), then a valid
one, presses Apply and waits for the result table to show every node in the new Network with
docker0 in range. The screenshots are kept in test-artifacts/ (look at them: they are what a
learner sees). The browser talks only to the local server; its background networking is off.
"""
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
NOTEBOOK = "01-etcd-and-config.ipynb"
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
CHROMIUM = os.environ.get("LABKIT_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
# the pictures drawn from a live lab in other notebooks: notebook -> (the drawing cell's code,
# words the drawing must contain, the screenshot's name)
PICTURES = {
    "06-packet-capture.ipynb": ("walk = walk_from_lab(", ("hop by hop", "route lookup", "FDB", "encapsulation",
                                                         "decapsulation", "VXLAN vni=1"), "jupyterlab-packet-walk.png"),
    "02-flanneld-leases.ipynb": ("timeline = watch_control_plane(", ("etcd", "node3", "flanneld"),
                                 "jupyterlab-control-plane.png"),
}
REQUIRED = os.environ.get("LABKIT_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the notebook builds a lab: needs root"
    if not os.path.exists(CHROMIUM):
        return (f"{CHROMIUM} is missing (Debian: apt-get install chromium, or ./run setup; Ubuntu's "
                "chromium is a snap: snap install chromium, then LABKIT_CHROMIUM=/snap/bin/chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (./run setup)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = _missing()
    if why:
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)
    from labkit.jupyter import cleanup_labs
    cleanup_labs()
    home = tmp_path_factory.mktemp("jupyter")
    env = dict(os.environ)
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"))
    # JupyterLab saves what the browser ran (autosave): serve a copy, never the committed notebook
    root = home / "notebooks"
    root.mkdir()
    for name in (NOTEBOOK, *PICTURES):
        shutil.copy(os.path.join(NOTEBOOKS, name), root / name)
    # no "official Jupyter news?" toast over the page
    (home / "config" / "labconfig").mkdir(parents=True)
    (home / "config" / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    token = secrets.token_hex(16)
    port = _free_port()
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, cwd=str(root), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError as err:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise AssertionError("jupyter lab did not start:\n" +
                                         (home / "server.log").read_text(errors="replace")[-3000:]) from err
                time.sleep(0.3)
        yield {"base": base, "token": token, "home": home}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server shuts its kernels down; they remove their labs
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        cleanup_labs()


def _cells_through(notebook: str, code: str) -> int:
    """How many cells, from the top, up to and including the first whose source has `code`."""
    with open(os.path.join(NOTEBOOKS, notebook)) as f:
        cells = json.load(f)["cells"]
    for i, cell in enumerate(cells):
        if code in "".join(cell["source"]):
            return i + 1
    raise AssertionError(f"no cell with {code!r} in {notebook}")


def _run_through(page, server, notebook: str, code: str) -> None:
    """Open `notebook`, wait for its kernel, and run every cell down to the one with `code`:
    Run All Above Selected Cell, then Run Selected Cell, the Run menu's two commands, asked of
    the app itself (a click on a prompt far down a long notebook can miss while it renders)."""
    page.goto(f"{server['base']}/lab/tree/{notebook}?token={server['token']}")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell", timeout=90_000)
    page.evaluate("""async ([path, index]) => {
        const app = window.jupyterapp;
        // this notebook's panel, by its path (the current widget may still be the last tab)
        // (JupyterLab restores the tabs of earlier tests: wait for this one's panel and kernel)
        let panel;
        for (let i = 0; i < 900 && !panel; i++) {
            panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
            if (!panel) await new Promise(r => setTimeout(r, 100));
        }
        app.shell.activateById(panel.id);
        await panel.context.ready;
        await panel.sessionContext.ready;
        for (let i = 0; i < 900 && panel.sessionContext.session?.kernel?.status !== 'idle'; i++)
            await new Promise(r => setTimeout(r, 100));
        panel.content.activeCellIndex = index;
        await app.commands.execute('notebook:run-all-above');
        panel.content.activeCellIndex = index;
        void app.commands.execute('notebook:run-cell');
    }""", [notebook, _cells_through(notebook, code) - 1])


def _errors(page) -> str:
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    return "\n".join(errors.all_inner_texts())


def _check_svg(picture, words) -> None:
    """JupyterLab shows image/svg+xml as an <img>; a broken SVG decodes to nothing (naturalWidth 0)."""
    picture.scroll_into_view_if_needed()
    size = picture.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
    assert size[0] and size[1] > 600 and size[2] > 250, size
    drawn = urllib.parse.unquote(picture.get_attribute("src") or "")
    assert drawn.startswith("data:image/svg+xml,"), drawn[:80]
    for word in words:
        assert word in drawn, word


@contextlib.contextmanager
def _browser(tmp_path, failure_shot: str):
    """A page in a fresh headless Chromium; on any failure a screenshot named `failure_shot`
    is kept in test-artifacts/ (what the learner would have seen)."""
    from playwright.sync_api import sync_playwright
    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        try:
            yield page
        except BaseException:
            try:
                page.screenshot(path=os.path.join(ARTIFACTS, failure_shot))
            except Exception:
                pass
            raise
        finally:
            ctx.close()


def test_config_panel_in_jupyterlab(server, tmp_path):
    from playwright.sync_api import expect
    shot = os.path.join(ARTIFACTS, "jupyterlab-config-panel.png")
    with _browser(tmp_path, "jupyterlab-config-panel-failure.png") as page:
        _run_through(page, server, NOTEBOOK, "ConfigPanel(lab)")
        panel = page.locator(".labkit-config-panel")
        try:
            expect(panel).to_be_visible(timeout=90_000)
        except AssertionError:
            raise AssertionError("the config panel did not appear; error outputs:\n" + _errors(page)) from None
        result = panel.locator("table.labkit-result")
        expect(result).to_contain_text("10.108.", timeout=30_000)

        # the topology picture, drawn from the lab by a cell above the panel
        picture = page.locator(".jp-RenderedSVG img").first
        expect(picture).to_be_visible(timeout=15_000)
        _check_svg(picture, ("master", "node1", "etcd :2379", "flannel.1 10.108.", "docker0 10.108.",
                             "lease 10.108."))
        picture.screenshot(path=os.path.join(ARTIFACTS, "jupyterlab-topology.png"))

        # backends labkit does not implement are there, greyed out
        expect(panel.locator("button:has-text('alloc')")).to_be_disabled()

        network = panel.locator("input[type='text']").first
        network.fill("10.20.0.0/29")
        expect(panel.locator(".labkit-error")).to_contain_text(
            "network is too small. Minimum useful network prefix is /28", timeout=15_000)
        apply = panel.locator("button:has-text('Apply')")
        expect(apply).to_be_disabled()

        network.fill("10.20.0.0/22")
        expect(panel.locator(".labkit-error")).to_have_count(0, timeout=15_000)
        expect(panel).to_contain_text("etcdctl put /flannel/network/config", timeout=15_000)
        expect(apply).to_be_enabled()
        apply.click()

        expect(result).to_contain_text("10.20.", timeout=60_000)
        expect(panel).to_contain_text("done", timeout=60_000)
        rows = result.locator("tr")
        expect(rows).to_have_count(3)          # header + master + node1
        for i in (1, 2):
            row = rows.nth(i)
            expect(row).to_contain_text("10.20.")
            expect(row.locator("td").last).to_have_text("✓")
        page.screenshot(path=shot, full_page=False)
        panel.screenshot(path=os.path.join(ARTIFACTS, "jupyterlab-config-panel-widget.png"))
    assert os.path.getsize(shot) > 10_000
    assert os.path.getsize(os.path.join(ARTIFACTS, "jupyterlab-topology.png")) > 10_000


@pytest.mark.timeout(300)
@pytest.mark.parametrize("notebook", sorted(PICTURES))
def test_live_picture_renders_in_jupyterlab(server, tmp_path, notebook):
    """The packet's walk (06) and the control-plane timeline (02), drawn by their notebook's
    own cell from its running lab, decode in the browser and show what they are about."""
    from playwright.sync_api import expect
    code, words, shot_name = PICTURES[notebook]
    shot = os.path.join(ARTIFACTS, shot_name)
    with _browser(tmp_path, f"jupyterlab-{notebook[:2]}-failure.png") as page:
        _run_through(page, server, notebook, code)
        # the drawing cell's picture is the notebook's first (no cell above it draws one)
        picture = page.locator(".jp-RenderedSVG img").first
        try:
            expect(picture).to_be_visible(timeout=150_000)
        except AssertionError:
            raise AssertionError(f"{notebook}: no picture; error outputs:\n" + _errors(page)) from None
        _check_svg(picture, words)
        picture.screenshot(path=shot)
        # shut the kernel down now: it removes the notebook's labs
        page.locator(".lm-MenuBar-itemLabel").get_by_text("Kernel", exact=True).click()
        page.locator(".lm-Menu-itemLabel").get_by_text("Shut Down Kernel", exact=True).click()
    assert os.path.getsize(shot) > 10_000
