"""The commands of ``kitaru-store`` that run flows, so they live in kitaru rather than in
kitaru_store (which never imports kitaru): ``recovery`` (retry, resume, input, abort-wait,
replay) and ``lifecycle`` (cancel, rm). kitaru_store/cli/app.py names each module in
COMMAND_MODULES by its full path and imports it only when one of its commands runs.
"""
