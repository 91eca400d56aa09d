"""Typed settings: every ``BASTION_*`` environment variable Bastion reads, in one place.

Each field's description is its documentation (``bastion settings`` prints them; a test checks they are all in
docs/settings.md).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.cwd() / "bastion-data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded SQLite database and the saved PDQ index live.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database; default: a SQLite file in data_dir. "
        "Use postgresql+psycopg://... for PostgreSQL.",
    )
    pdq_match_threshold: int = Field(
        default=31, ge=0, le=128, description="PDQ Hamming distance at or below which two hashes match."
    )
    pdq_min_quality: int = Field(
        default=50, ge=0, le=100, description="PDQ hashes of lower quality are discarded (not matched or banked)."
    )
    pdq_match_dihedral: bool = Field(
        default=True, description="Also query the 8 rotations/mirrors of each PDQ hash, so flipped copies match."
    )
    vpdq_frame_threshold: int = Field(
        default=31, ge=0, le=128, description="vPDQ: distance at or below which two frame hashes match."
    )
    vpdq_match_percent: float = Field(
        default=80.0, gt=0, le=100,
        description="vPDQ: share of a video's frames that must match a bank video's frames.",
    )
    vpdq_seconds_per_hash: float = Field(
        default=1.0, gt=0, description="vPDQ: one frame hash per this many seconds of video."
    )
    text_near_duplicate_threshold: float = Field(
        default=0.5, gt=0, le=1,
        description="Estimated Jaccard similarity at or above which two texts are near-duplicates.",
    )
    orb_descriptor_radius: int = Field(
        default=40, ge=0, le=128,
        description="ORB signal: Hamming distance at or below which two keypoint descriptors may correspond.",
    )
    orb_min_inliers: int = Field(
        default=12, ge=4, le=64,
        description="ORB signal: keypoints that must agree on one rotation, scale and shift for a match.",
    )
    max_file_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0, description="Files larger than this are refused unread."
    )
    max_image_pixels: int = Field(
        default=100_000_000, gt=0,
        description="Images declaring more pixels than this are refused before decoding (bomb protection).",
    )
    max_video_seconds: float = Field(
        default=4 * 3600, gt=0, description="Videos longer than this are refused."
    )
    max_text_bytes: int = Field(
        default=20 * 1024 * 1024, gt=0, description="Text and extracted PDF text longer than this is refused."
    )
    index_refresh_seconds: float = Field(
        default=1.0, gt=0, le=60,
        description="How often each process applies bank changes to its in-memory index (seconds).",
    )
    max_upload_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0,
        description="Largest submission body accepted by POST /v1/content (file, text or URL form); larger is 413.",
    )
    inline_decision_bytes: int = Field(
        default=16 * 1024 * 1024, gt=0,
        description="Images and texts up to this size are decided inside the submitting request; larger ones, "
        "videos, PDFs and fetched URLs are decided by a worker (the response says pending).",
    )
    fetch_allow_private: bool = Field(
        default=False,
        description="Let URL fetching reach private, loopback and link-local addresses on any port (tests and "
        "closed networks only: it disables the SSRF protection).",
    )
    job_lease_seconds: float = Field(
        default=60.0, ge=1, le=3600,
        description="A worker holds a job this long, renewed while it works; a crashed worker's jobs are taken over "
        "by another worker after at most this long.",
    )
    outbox_retention_days: float = Field(
        default=30.0, ge=0,
        description="Workers delete webhook events and deliveries finished (delivered or given up) longer ago than "
        "this, once an hour (0: keep them for ever). Pending deliveries are always kept.",
    )
    review_lease_seconds: float = Field(
        default=600.0, ge=10, le=86400,
        description="A reviewer holds an item this long after opening it (renewed while the page is open); then "
        "another reviewer may take it, and a decision on the expired lease is refused.",
    )
    worker_threads: int = Field(
        default=1, ge=0, le=64,
        description="Worker threads bastion serve runs in-process (0: none; run bastion worker processes instead).",
    )
    admin_organisation: str = Field(
        default="admin",
        description="Name of the organisation created, with an all-scope API key, on first start of an empty database.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that encrypts stored secrets (webhook signing secrets). Unset: one is generated once and "
        "kept in data_dir/secret.key (mode 0600); deployments with several machines must set it, the same on all.",
    )
    webhook_allow_http: bool = Field(
        default=False, description="Accept plain http:// webhook URLs (default: https only). For tests and labs."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Let webhooks reach loopback, private and link-local addresses (default: public addresses only, "
        "checked at registration and again before every delivery). For tests and intranet receivers.",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Time limit of each webhook delivery request (connect, send, read)."
    )
    webhook_max_attempts: int = Field(
        default=20, ge=1, le=100, description="A webhook delivery is given up (status failed) after this many attempts."
    )
    webhook_retry_base_seconds: float = Field(
        default=10.0, gt=0, description="First retry delay of a failed webhook delivery; doubled after each attempt."
    )
    webhook_retry_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest delay between two attempts of a webhook delivery."
    )
    # authorities (issue 6): signed order files, threat-to-life escalation e-mail
    orders_drop_dir: Path | None = Field(
        default=None,
        description="A directory the workers watch for signed order files (*.json) from authorities that cannot "
        "call the API; imported files move to processed/, refused ones to rejected/ with the reason. Unset: none.",
    )
    smtp_host: str | None = Field(
        default=None, description="SMTP server that threat-to-life escalation e-mails go through; unset: no e-mail."
    )
    smtp_port: int = Field(default=25, ge=1, le=65535, description="Port of smtp_host.")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS before sending.")
    smtp_username: str | None = Field(default=None, description="SMTP login name (with smtp_password); unset: none.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password for smtp_username.")
    smtp_from: str = Field(default="bastion@localhost", description="Sender address of escalation e-mails.")
    escalation_max_attempts: int = Field(
        default=10, ge=1, le=100,
        description="An escalation e-mail is given up (channel failed, shown to leads) after this many attempts; "
        "retries back off like webhook deliveries.",
    )
    admin_email: str = Field(
        default="admin@bastion.localhost",
        description="Address of the admin user created, with a one-time password printed once, on first start.",
    )
    console_session_idle_minutes: float = Field(
        default=30.0, gt=0, le=24 * 60,
        description="A console session unused for this long ends (the reviewer signs in again).",
    )
    console_session_max_hours: float = Field(
        default=12.0, gt=0, le=24 * 30,
        description="A console session ends this long after sign-in, however active.",
    )
    console_secure_cookies: bool = Field(
        default=False,
        description="Mark console cookies Secure even when the request reached Bastion over plain http (set it "
        "behind a TLS-terminating proxy). Requests that arrive over https always get Secure cookies.",
    )
    login_max_failures_per_email: int = Field(
        default=5, ge=1, le=1000,
        description="Failed console sign-ins for one address within login_throttle_minutes before further tries "
        "are refused (429 too_many_attempts) without checking the password.",
    )
    login_max_failures_per_client: int = Field(
        default=20, ge=1, le=100000,
        description="Failed console sign-ins from one client address within login_throttle_minutes before further "
        "tries from it are refused (429 too_many_attempts).",
    )
    login_throttle_minutes: float = Field(
        default=15.0, gt=0, le=24 * 60, description="The window in which failed console sign-ins are counted."
    )
    preservation_key: SecretStr | None = Field(
        default=None,
        description="Base64 of the 32-byte AES-256-GCM key that encrypts preserved content (TCO Art. 6). Unset: a "
        "key derived from secret_key (HKDF-SHA256). Deployments with a KMS plug in their own KeyProvider instead.",
    )
    preservation_days: int = Field(
        default=183, ge=1, le=3650,
        description="Days removed content and its data are preserved before they are purged (six months; an "
        "authority or court may extend one item).",
    )
    complaint_deadline_days: int = Field(
        default=14, ge=1, le=365, description="Days within which a complaint (TCO Art. 10, DSA Art. 20) is decided."
    )
    complaint_reminder_days: int = Field(
        default=3, ge=0, le=365,
        description="A complaint still open this many days before its deadline sends a complaint.reminder event.",
    )
    compliance_sweep_seconds: float = Field(
        default=60.0, gt=0,
        description="How often each worker runs the compliance sweep: statements of reasons, preservation and "
        "notices for new restrictions, complaint reminders, notice delays ending, expired preservation purged.",
    )
    # -- the industry forum (issue 5) --
    forum_database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of a forum hub's own database (bastion forum serve, bastion forum member ...); "
        "default: forum.sqlite3 in data_dir. A hub is a separate service from the platform and keeps its own data.",
    )
    forum_sync_seconds: float = Field(
        default=2.0, ge=0,
        description="How often each worker syncs the organisations' joined forums (pull deltas, push shared hashes, "
        "send review feedback); 0: workers never sync (run bastion forum sync instead).",
    )
    forum_rescan_hours: float = Field(
        default=24.0, gt=0, le=720,
        description="How far back a member rescans its uploads against an incident's hashes when the hub's "
        "incident does not say (the incident's window_hours wins).",
    )



@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
