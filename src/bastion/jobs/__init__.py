"""Background work: a durable job queue in the database (:mod:`bastion.jobs.queue`) and the worker loop that runs
it (:mod:`bastion.jobs.worker`)."""
