"""Basset-style sequence-to-accessibility models, built gReLU-style:
layers → blocks → trunks → heads → model."""

from .model import BassetModel, ModelConfig, calibrate_batchnorm, count_parameters, load_checkpoint, save_checkpoint

__all__ = ["BassetModel", "ModelConfig", "calibrate_batchnorm", "count_parameters", "load_checkpoint", "save_checkpoint"]
