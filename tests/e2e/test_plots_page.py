"""The `dvc plots show` and `dvc plots diff` pages render every chart offline, in headless Chromium.

A temporary copy of the project gets plot data made by the `plots` stage's own row functions (no
training needed), and the real `dvc` writes the pages with the HTML template set in `.dvc/config`.
Chromium opens each page with every host name unresolvable, so a page that still loaded a library
from a CDN would stay blank. A probe script added to a copy of the page reports what each chart
drew on its canvas; a screenshot of the page must not be blank either.
"""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from imdb_regularization.atomic import write_csv
from imdb_regularization.evaluation.report import curve_rows, score_rows, weight_histogram_rows, words_kept_rows
from imdb_regularization.params import parse_params
from tests.support.project import PROJECT_ROOT, copy_pipeline, plot_titles, run_dvc, run_in

WINDOW_WIDTH, WINDOW_HEIGHT = 1400, 2400
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    # No network: a library the page fetched instead of inlining would fail to load.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    # Virtual time runs the page's timers at once, so the probe needs no real waiting.
    "--virtual-time-budget=10000",
    f"--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}",
]
# Runs after the charts drew (in virtual time) and writes, per chart div of DVC's page, its rendered
# elements and the fraction of its canvas in colour, any error the template showed and every resource
# the page requested, for --dump-dom.
PROBE = """<script>
setTimeout(() => {
  const charts = [...document.body.children].filter((element) => element.matches("div") && element.id).map((div) => {
    const report = {id: div.id, embedded: div.classList.contains("vega-embed"),
                    rendered: div.querySelectorAll("canvas, svg.marks").length, coloured: 0};
    const canvas = div.querySelector("canvas");
    if (canvas && canvas.width && canvas.height) {
      // Axes, grid and text are grey; only the data's lines and bars are drawn in colour.
      const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      for (let index = 0; index < pixels.length; index += 4) {
        const channels = pixels.slice(index, index + 3);
        if (pixels[index + 3] > 0 && Math.max(...channels) - Math.min(...channels) > 80) report.coloured += 1;
      }
      report.coloured /= canvas.width * canvas.height;
    }
    return report;
  });
  const errors = [...document.querySelectorAll(".plot-error")].map((element) => element.textContent);
  const requests = performance.getEntriesByType("resource").map((entry) => entry.name);
  const output = Object.assign(document.createElement("pre"), {id: "probe", hidden: true});
  output.textContent = JSON.stringify({charts, errors, requests});
  document.body.append(output);
}, 3000);
</script>
"""


def _write_plot_data(plots_dir: Path, seed: int) -> None:
    """Made-up curves, weights and test scores of every model in params.yaml, as the `plots` stage writes them."""
    rng = np.random.default_rng(seed)
    names = list(parse_params((PROJECT_ROOT / "params.yaml").read_text()).models)
    epochs = list(range(1, 7))
    falling = {name: np.sort(rng.uniform(0.3, 0.7, (4, len(epochs))))[:, ::-1] for name in names}
    histories = {
        name: {
            "epoch": epochs,
            "bce": curves[0],
            "val_bce": curves[1],
            "accuracy": 1 - curves[2],
            "val_accuracy": 1 - curves[3],
        }
        for name, curves in falling.items()
    }
    weights = {name: rng.laplace(scale=0.02 * (index + 1), size=2000) for index, name in enumerate(names)}
    metrics = {
        name: {
            "test_bce": round(rng.uniform(0.3, 0.7), 4),
            "test_accuracy": 0.7,
            "test_auc": 0.8,
            "words_kept": int(rng.integers(5, 96)),
            "words_kept_fraction": 0.5,
        }
        for name in names
    }
    write_csv(plots_dir / "curves.csv", curve_rows(histories))
    write_csv(plots_dir / "weights.csv", weight_histogram_rows(weights))
    write_csv(plots_dir / "test.csv", score_rows(metrics))
    write_csv(plots_dir / "words_kept.csv", words_kept_rows(metrics))


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium binary on PATH (Debian: apt-get install chromium; .ci/run installs it)")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The project's DVC files, with plot data committed and different plot data in the workspace."""
    repo = copy_pipeline(tmp_path_factory.mktemp("plots_page") / "project")
    # The study's charts draw its committed results, which the copy holds.
    for name in ("plot.csv", "widths.csv"):
        assert (repo / "study" / "results" / name).read_bytes() == (
            PROJECT_ROOT / "study" / "results" / name
        ).read_bytes()
    _write_plot_data(repo / "plots", seed=0)
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "plots")
    _write_plot_data(repo / "plots", seed=1)
    return repo


def _render(repo: Path, command: str) -> Path:
    output_dir = repo.parent / f"{command}_page"
    run_dvc(repo, "plots", command, "-o", str(output_dir))
    return output_dir / "index.html"


@pytest.fixture(scope="module")
def show_page(repo) -> Path:
    return _render(repo, "show")


@pytest.fixture(scope="module")
def diff_page(repo) -> Path:
    """The page of `dvc plots diff`: the committed plot data (HEAD) against the workspace's."""
    return _render(repo, "diff")


def _open_in_chromium(chromium: str, page: Path) -> tuple[dict, np.ndarray]:
    """What the probe found on the page, and a screenshot of it (height x width x channels)."""
    probed, screenshot = page.with_name("probed.html"), page.with_name("screenshot.png")
    # The last `</body>`: vega-embed's code holds one in a string, for its "view source" window.
    head, body_end, tail = page.read_text(encoding="utf-8").rpartition("</body>")
    probed.write_text(head + PROBE + body_end + tail, encoding="utf-8")
    result = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={page.parent / 'profile'}",
            f"--screenshot={screenshot}",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r'<pre id="probe"[^>]*>(.*?)</pre>', result.stdout, re.DOTALL)
    assert match, f"the probe did not report; Chromium said:\n{result.stderr[-3000:]}"
    return json.loads(html.unescape(match.group(1))), imread(screenshot)


def _assert_every_chart_drawn(probe: dict, screenshot: np.ndarray) -> None:
    assert probe["errors"] == [] and probe["requests"] == []
    # The six charts of the pipeline and the three of the regularization study.
    assert len(probe["charts"]) == len(plot_titles()) == 9
    for chart in probe["charts"]:
        # Axes and labels alone colour almost nothing (under 0.1% of a chart with no data); data 0.7% or more.
        assert chart["embedded"] and chart["rendered"] == 1 and chart["coloured"] > 0.003, chart
    assert screenshot.shape[:2] == (WINDOW_HEIGHT, WINDOW_WIDTH)
    # The page with the charts' data removed: 0.6% of its pixels inked, 0.003% in colour; with data 4% and 2%.
    pixels = screenshot[..., :3].reshape(-1, 3)
    assert (pixels.min(axis=1) < 0.95).mean() > 0.02
    assert (np.ptp(pixels, axis=1) > 0.3).mean() > 0.005


def test_page_loads_nothing_from_the_network(show_page):
    page = show_page.read_text(encoding="utf-8")
    assert re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page) == []
    assert "vegaEmbed(" in page and "cdn.jsdelivr.net" not in page
    licences = (PROJECT_ROOT / ".dvc" / "plots" / "LICENSES-vega.txt").read_text(encoding="utf-8")
    assert all(f"\n== {library} " in licences for library in ("vega", "vega-lite", "vega-embed"))


def test_plots_show_renders_every_chart_offline(show_page, chromium):
    _assert_every_chart_drawn(*_open_in_chromium(chromium, show_page))


def test_plots_diff_renders_every_chart_offline_with_both_revisions(diff_page, chromium):
    page = diff_page.read_text(encoding="utf-8")
    specs = [json.loads(spec) for spec in re.findall(r"var spec = (\{.*?\});\s*vegaEmbed", page, re.DOTALL)]
    revisions = [{row["rev"] for row in spec["data"]["values"]} for spec in specs]
    assert revisions == [{"HEAD", "workspace"}] * len(plot_titles())
    _assert_every_chart_drawn(*_open_in_chromium(chromium, diff_page))
