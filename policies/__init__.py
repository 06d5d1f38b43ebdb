"""Security policies shipped with rlm-host (YAML and seccomp JSON; no code)."""
