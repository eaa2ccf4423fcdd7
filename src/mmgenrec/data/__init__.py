"""Stage 1-2: raw Amazon-2018-format data (synthetic for the demo) and its preparation into LC-Rec-style files."""
