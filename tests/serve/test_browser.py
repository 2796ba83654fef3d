"""The pages in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium):
start a training from the form, watch progress and loss move, stop it, see it interrupted,
resume it, see its LoRA. A screenshot of each page goes to $LORAKIT_TEST_ARTIFACTS."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE
from tests.serve.conftest import REPLAY, Server, artifacts_dir, start_server, stop_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver")


def _why_no_browser() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.access(path, os.X_OK) or shutil.which(Path(path).name)):
            return f"{path} is not installed (apt-get install chromium chromium-driver; .ci/run does it)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = _why_no_browser()
    if why is not None:
        if os.environ.get("LORAKIT_CI") and not os.environ.get("LORAKIT_CI_NO_BROWSER"):
            pytest.fail(f"browser tests cannot run in CI: {why}")
        pytest.skip(why)
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # a driver path: no Selenium Manager
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # the recorded log replayed slowly, a training state saved first, then a while of "training"
    fake = {**REPLAY, "FAKE_CHUNK": "300", "FAKE_DELAY": "0.05", "FAKE_STATE": "1:4", "FAKE_SLEEP": "3"}
    srv = start_server(tmp_path_factory.mktemp("browser"), fake=fake)
    yield srv
    stop_server(srv)


def wait(driver: Any, cond: Any, timeout: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(cond)


def text_of(driver: Any, css: str) -> str:
    """The element's text; "" while the page is being replaced (it reloads after a run ends)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except (StaleElementReferenceException, NoSuchElementException):
        return ""


def attr_of(driver: Any, css: str, name: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).get_attribute(name) or "")
    except (StaleElementReferenceException, NoSuchElementException):
        return ""


def displayed(driver: Any, css: str) -> bool:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return bool(driver.find_element(By.CSS_SELECTOR, css).is_displayed())
    except (StaleElementReferenceException, NoSuchElementException):
        return False


def shot(driver: Any, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 5000
    return path


def test_train_stop_resume_from_the_pages(browser: Any, slow_server: Server) -> None:
    from selenium.webdriver.common.by import By

    d, srv = browser, slow_server
    find = lambda css: d.find_element(By.CSS_SELECTOR, css)  # noqa: E731
    d.get(srv.url + "new")
    from selenium.webdriver.support.ui import Select

    Select(find("#preset")).select_by_value("comic-style")
    find("#data").send_keys(str(EXAMPLE))
    find('[data-key="model.checkpoint"]').send_keys(srv.env["FAKE_CKPT"])
    find('[data-key="training.batch_size"]').send_keys("0")
    # the CLI's own validation, shown under the field
    wait(d, lambda d: "batch_size" in text_of(d, '.err[data-for="training.batch_size"]'))
    assert "bad" in find('[data-key="training.batch_size"]').get_attribute("class")
    shot(d, "new-field-error")
    find('[data-key="training.batch_size"]').clear()
    find("#overrides").send_keys("saving.save_state=true")
    wait(d, lambda d: "steps" in text_of(d, "#plan").lower() and not text_of(d, '.err[data-for="training.batch_size"]'))
    shot(d, "new")
    find("#start").click()
    wait(d, lambda d: "/runs/" in d.current_url)
    run = d.current_url.rsplit("/", 1)[-1]
    # progress and loss move, live (SSE)
    wait(d, lambda d: text_of(d, "#status") == "running")
    first = text_of(d, "#step")
    wait(d, lambda d: text_of(d, "#step") != first and int(attr_of(d, "#loss", "data-points") or 0) > 3)
    points = int(attr_of(d, "#loss", "data-points") or 0)
    wait(d, lambda d: int(attr_of(d, "#loss", "data-points") or 0) > points)
    shot(d, "run-live")
    find("#stop").click()
    wait(d, lambda d: text_of(d, "#status") == "interrupted")
    wait(d, lambda d: displayed(d, "#resume"))  # the page reloads after `finished`
    assert "interrupted" in text_of(d, "#diagnosis")
    shot(d, "run-interrupted")
    find("#resume").click()
    wait(d, lambda d: text_of(d, "#status") == "running")
    wait(d, lambda d: text_of(d, "#status") == "done", timeout=60)
    wait(d, lambda d: text_of(d, "#lora").endswith(".safetensors"))
    shot(d, "run-done")
    d.get(srv.url + "runs")
    assert run in text_of(d, "#runs")
    shot(d, "runs")


def test_the_other_pages_render(browser: Any, slow_server: Server) -> None:
    d, srv = browser, slow_server
    d.get_log("browser")  # drop what earlier pages logged
    for name, path, css in (
        ("queue", "queue", "#jobs"),
        ("gpus", "gpus", "#comfy-state"),
        ("dataset", f"dataset?path={EXAMPLE}", "#verdict"),
    ):
        d.get(srv.url + path)
        assert text_of(d, css) or name == "queue"
        assert not [e for e in d.get_log("browser") if e["level"] == "SEVERE"], name
        shot(d, name)


def test_vram_panel_offers_changes_that_fit(browser: Any, slow_server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d, srv = browser, slow_server
    d.get(srv.url + "new")
    Select(d.find_element(By.CSS_SELECTOR, "#preset")).select_by_value("comic-style")
    d.find_element(By.CSS_SELECTOR, "#data").send_keys(str(EXAMPLE))
    d.find_element(By.CSS_SELECTOR, '[data-key="model.checkpoint"]').send_keys(srv.env["FAKE_CKPT"])
    d.find_element(By.CSS_SELECTOR, "#vram-size").send_keys("8GB")
    d.find_element(By.CSS_SELECTOR, "#check-vram").click()
    wait(d, lambda d: text_of(d, "#vram-verdict") == "verdict: does-not-fit")
    button = d.find_element(By.CSS_SELECTOR, "#vram button")
    assert button.text.startswith("make it fit:")
    button.click()
    wait(d, lambda d: "training.gradient_checkpointing=true" in attr_of(d, "#overrides", "value"))
    d.find_element(By.CSS_SELECTOR, "#check-vram").click()
    wait(d, lambda d: text_of(d, "#vram-verdict") in ("verdict: fits", "verdict: tight"))
    wait(d, lambda d: "training.resolution: 1024 → 768" in text_of(d, "#plan"))  # the plan follows the changed fields
    shot(d, "new-vram")
