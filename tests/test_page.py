"""The page at / in a real headless Chromium (Selenium): type a sentence, submit, wait for the
highlighted spans, and check their text and type against the API's answer. A screenshot goes
to the test's temp folder. Skips with the reason where no browser is installed (fails under
CI=true, whose .ci/run installs chromium and chromium-driver)."""
from __future__ import annotations

import json
import os
import shutil
import urllib.request

import pytest

from serving.server import Running, build_service
from tests.tiny import confident_checkpoint

TEXT = "Angela Merkel besuchte Paris und traf Emmanuel Macron"


def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        reason = "needs chromium and chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; .ci/run installs them")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=420,900"):
        options.add_argument(arg)  # 420 px: a phone's width
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@pytest.mark.slow
def test_page_highlights_the_entities_the_api_finds(spm_path, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    service = build_service(confident_checkpoint(tmp_path / "model", spm_path), amp="off")
    driver = browser()
    try:
        with Running(service) as url:
            request = urllib.request.Request(url + "/api/tag", data=json.dumps({"text": TEXT}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request) as r:
                expected = [(e["word"], e["entity_group"]) for e in json.loads(r.read())["entities"]]
            assert expected, "the model should tag something in the sentence"

            driver.get(url + "/")
            box = driver.find_element(By.ID, "text")
            box.clear()
            box.send_keys(TEXT)
            driver.find_element(By.ID, "submit").click()
            wait = WebDriverWait(driver, 30)
            wait.until(ec.text_to_be_present_in_element((By.ID, "latency"), "entities"))
            marks = driver.find_elements(By.CSS_SELECTOR, "#output mark.entity")
            got = [(m.find_element(By.CLASS_NAME, "text").text, m.get_attribute("data-label")) for m in marks]
            assert got == expected
            assert driver.find_element(By.ID, "output").text.replace("\n", " ").startswith(TEXT.split()[0])
            # The sub-word table appears when asked for.
            driver.find_element(By.ID, "show-tokens").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tokens td"))
            assert "▁Angela" in driver.find_element(By.ID, "tokens").text
            driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
    assert (tmp_path / "page.png").read_bytes()[:4] == b"\x89PNG"
