"""The keys current Moonraker sends in ``machine.update.status`` (read off its deploy classes'
``get_update_status``: AppDeploy's common keys, then GitRepo, NetDeploy, PythonDeploy,
PackageDeploy; an absent Klipper is BaseDeploy's empty object).  Mainsail and Fluidd read these."""

COMMON = {"channel", "debug_enabled", "channel_invalid", "is_valid", "configured_type", "info_tags"}
GIT_REPO = COMMON | {
    "detected_type", "repo_detected", "remote_alias", "branch", "owner", "repo_name", "remote_url", "recovery_url",
    "version", "remote_version", "rollback_version", "current_hash", "remote_hash", "is_dirty", "detached",
    "commits_behind", "commits_behind_count", "git_messages", "full_version_string", "pristine", "corrupt",
    "warnings", "anomalies", "name",
}
RELEASE = COMMON | {
    "name", "repo_name", "owner", "version", "remote_version", "rollback_version", "last_error", "warnings", "anomalies",
}
PYTHON = COMMON | {
    "detected_type", "name", "branch", "owner", "repo_name", "version", "remote_version", "rollback_version",
    "current_hash", "remote_hash", "is_dirty", "changelog_url", "full_version_string", "pristine", "warnings",
}
SYSTEM = {"name", "configured_type", "package_count", "package_list"}
ABSENT: set[str] = set()
STATUS = {"busy", "github_rate_limit", "github_requests_remaining", "github_limit_reset_time", "version_info"}
COMMIT = {"sha", "author", "date", "subject", "message", "tag"}
RESPONSE = {"message", "application", "proc_id", "complete"}
