"""Decisions: from a submission's signals to a recorded, explained decision.

:mod:`bastion.decisions.pipeline` runs one submission through matching, classifiers and the organisation's policy
(:meth:`~DecisionPipeline.analyse`, reads only) and records the outcome (:meth:`~DecisionPipeline.record`: the
decision, its audit record and its webhook event in one transaction).
"""
