"""Test-only ComfyUI pack (no nodes): lets the stock UNETLoader load tiny random-weight models of
families whose widths stock model detection hard-codes (Flux: 24 heads; PixArt: hidden 1152;
Qwen-Image: 24 heads of 128).

A tiny file carries its real config in the safetensors metadata key `tiny_dit_overrides`; this wraps
`comfy.model_detection.detect_unet_config` (looked up as a module global at call time) to update the
detected config from it. Files without the key are detected exactly as stock ComfyUI does. Never
installed for users: the workflow and browser tests whitelist it on their own server only.
"""
import json
import logging

import comfy.model_detection as model_detection

KEY = "tiny_dit_overrides"
_stock = model_detection.detect_unet_config


def detect_unet_config(state_dict, key_prefix, metadata=None):
    config = _stock(state_dict, key_prefix, metadata=metadata)
    overrides = (metadata or {}).get(KEY)
    if config is not None and overrides:
        config.update(json.loads(overrides))
        logging.info("blockdance_test_sizes: %s", config)
    return config


model_detection.detect_unet_config = detect_unet_config
NODE_CLASS_MAPPINGS = {}
