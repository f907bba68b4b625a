"""Tests of dar.integrations: real SDK clients against local model servers."""
