"""Tests of the G-code metadata extractor."""
