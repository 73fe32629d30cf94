"""Raw-media pipeline for multimodal emotion recognition in conversation.

Importing the package pins the offline, no-telemetry environment every stage relies on, so a user
never has to export it by hand.
"""

from pipeline.env import apply_project_env

apply_project_env()
