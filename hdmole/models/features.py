"""Whisper's own log-mel features, for the real recipe with a pre-trained Whisper encoder.

It lives with the rest of the front end in ``hdmole.data.frontend`` (raw-audio data dirs compute it in the
data loader); this name stays for the model side.
"""

from hdmole.data.frontend import whisper_log_mel

__all__ = ["whisper_log_mel"]
