"""Human review: queues, leases, reviewers' decisions, quality assurance and appeals (see service.py)."""

from bastion.review.service import ItemInfo, LeaseLost, Reviewer, ReviewService, enqueue, reviewer_for

__all__ = ["ItemInfo", "LeaseLost", "ReviewService", "Reviewer", "enqueue", "reviewer_for"]
