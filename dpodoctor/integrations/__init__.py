"""Integrations that run dpodoctor inside a training framework.

Why a package of its own: each integration imports its framework (transformers, ...), which are optional extras.
Nothing here is imported by ``import dpodoctor``; import the integration's module itself, e.g.
``from dpodoctor.integrations.transformers import DPODoctorCallback`` (needs ``pip install 'dpodoctor[trl]'``).
"""
