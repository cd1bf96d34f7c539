"""kitaru-store commands that run the SDK (registered by module path in kitaru_store/cli/app.py)."""
