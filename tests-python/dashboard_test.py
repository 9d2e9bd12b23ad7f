"""The dashboard in a real browser (Debian's chromium through selenium), against a real fleet.

Usage: dashboard_test.py BASE_URL FEDPI_BIN DATA_DIR OUT_DIR WORKER_PID_TO_KILL

Checks, with a screenshot of each step in OUT_DIR:
  - the page fetches nothing from anywhere but the aggregator;
  - the nodes table shows the 3 workers online;
  - the accuracy chart gains a point when a round ends;
  - pause holds the next dispatch, resume continues;
  - a killed worker shows offline within 5 s;
  - an uploaded test image is predicted as its label by the trained model, and a drawing made with
    pointer actions on the canvas gets a prediction.
"""
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.request
import zlib

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

BASE, FEDPI, DATA, OUT, VICTIM = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
os.makedirs(OUT, exist_ok=True)


def api(path, body=None):
    req = urllib.request.Request(BASE + path, data=body, method="POST" if body is not None else "GET",
                                 headers={"content-type": "application/json"} if body is not None else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        data = r.read()
        return json.loads(data) if r.headers.get("content-type", "").startswith("application/json") else data


def wait(what, timeout, condition, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(step)
    shot("timeout")
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def png(pixels, width, height):
    """A grayscale PNG (zlib from the standard library)."""
    raw = b"".join(b"\x00" + bytes(pixels[y * width:(y + 1) * width]) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1300", "--disable-gpu"]:
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
shots = 0


def shot(name):
    global shots
    shots += 1
    driver.save_screenshot(os.path.join(OUT, f"{shots:02d}-{name}.png"))


def states():
    # read in one script: the table is rebuilt every 2 s, so elements found one call earlier go stale
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#nodes tbody tr')]"
        ".map(r => [r.dataset.node, r.querySelector('.state').textContent]))")


def points():
    return int(driver.find_element(By.ID, "chart").get_attribute("data-points") or 0)


def phase():
    return driver.find_element(By.ID, "phase").text


try:
    driver.get(BASE + "/")
    wait("3 online nodes", 120, lambda: list(states().values()) == ["online"] * 3)
    print("dashboard: 3 nodes online", flush=True)
    shot("online")

    before = points()
    wait("a round to end", 180, lambda: points() > before)
    print(f"dashboard: chart {before} -> {points()} points after a round", flush=True)
    # per class: one row per class with the evaluation's counts (the aggregator evaluates centrally here)
    shown = int(wait("the per-class table", 10, lambda: driver.find_element(By.ID, "classes").get_attribute("data-round")))
    rows = driver.find_elements(By.CSS_SELECTOR, "#classes tr")[1:]
    evaluated = next(r for r in api("/api/v1/rounds") if r["round"] == shown and r.get("confusion"))
    assert len(rows) == len(evaluated["confusion"]) == 10, f"{len(rows)} rows for {len(evaluated['confusion'])} classes"
    support = [int(r.find_elements(By.TAG_NAME, "td")[3].text) for r in rows]
    assert support == [sum(row) for row in evaluated["confusion"]], f"test images per class {support}"
    print(f"dashboard: per-class table for round {evaluated['round']}, first row: {rows[0].text}", flush=True)
    shot("chart")

    driver.find_element(By.ID, "pause").click()
    wait("the fleet to pause", 180, lambda: phase() == "paused")
    held = api("/api/v1/fleet")["control"]["completed_rounds"]
    time.sleep(6)
    fleet = api("/api/v1/fleet")
    assert fleet["control"]["completed_rounds"] == held and fleet.get("round") is None, f"paused, yet a round ran: {fleet['control']}"
    assert phase() == "paused"
    print(f"dashboard: paused after round {held}; nothing dispatched for 6 s", flush=True)
    shot("paused")
    driver.find_element(By.ID, "resume").click()
    wait("a round after resume", 180, lambda: api("/api/v1/fleet")["control"]["completed_rounds"] > held)
    print("dashboard: resumed, round", api("/api/v1/fleet")["control"]["completed_rounds"], "done", flush=True)

    os.kill(VICTIM, signal.SIGKILL)
    killed = time.time()
    name = wait("the killed worker to show offline", 5, lambda: next((n for n, s in states().items() if s == "offline"), None), step=0.05)
    print(f"dashboard: {name} offline {time.time() - killed:.1f} s after SIGKILL", flush=True)
    shot("offline")

    # freeze the model, then find a test image it gets right and upload it
    driver.find_element(By.ID, "pause").click()
    wait("the fleet to pause", 180, lambda: phase() == "paused")
    model = os.path.join(OUT, "model.safetensors")
    with open(model, "wb") as f:
        f.write(api("/api/v1/model"))
    args = [FEDPI, "predict", "--model", model, "--data", DATA, "--json"] + [a for i in range(50) for a in ("--index", str(i))]
    answers = [json.loads(line) for line in subprocess.run(args, check=True, capture_output=True, text=True).stdout.splitlines()]
    right = next(a for a in answers if a["predicted_class"] == a["label"])
    index = int(right["image"].split("[")[1].rstrip("]"))
    # the same image from the IDX file (raw or gzip), as a PNG
    path = next(os.path.join(DATA, n) for n in sorted(os.listdir(DATA)) if n.startswith("t10k-images"))
    raw = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
    image = raw[16 + index * 784:16 + (index + 1) * 784]
    upload = os.path.join(OUT, f"test-{index}-label-{right['label']}.png")
    with open(upload, "wb") as f:
        f.write(png(image, 28, 28))
    driver.find_element(By.ID, "upload").send_keys(os.path.abspath(upload))
    wait("the upload's prediction", 20, lambda: driver.find_element(By.ID, "prediction").get_attribute("data-class") is not None)
    got = int(driver.find_element(By.ID, "prediction").get_attribute("data-class"))
    assert got == right["label"], f"uploaded test image {index} (label {right['label']}) predicted as {got}"
    print(f"dashboard: uploaded test image {index} predicted as its label {got}", flush=True)
    shot("upload")

    # a drawing: a vertical stroke, with pointer actions
    driver.find_element(By.ID, "clear").click()
    canvas = driver.find_element(By.ID, "draw")
    ActionChains(driver).move_to_element_with_offset(canvas, 0, -80).click_and_hold() \
        .move_by_offset(2, 40).move_by_offset(0, 40).move_by_offset(-2, 40).move_by_offset(0, 40).release().perform()
    driver.find_element(By.ID, "predict-btn").click()
    wait("the drawing's prediction", 20, lambda: driver.find_element(By.ID, "prediction").get_attribute("data-class") is not None)
    bars = driver.find_elements(By.CSS_SELECTOR, "#probs div")
    assert len(bars) == 11, f"10 probabilities and the round: {len(bars)}"
    print("dashboard: drawing predicted as", driver.find_element(By.ID, "prediction").text, flush=True)
    shot("drawing")

    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    foreign = [r for r in resources if not r.startswith(BASE)]
    assert not foreign, f"fetched from elsewhere: {foreign}"
    print(f"dashboard: {len(resources)} requests, all to the aggregator", flush=True)
finally:
    driver.quit()
