"""espeak-ng and sox as libraries: the wavs of ``corpus_synthesis.synthesize`` without two program starts each.

Why: every ``espeak-ng`` start loads the Mandarin dictionary (about 21 ms here) and every ``sox`` start its
format plugins (about 7 ms), against about 10 ms of synthesis for a typical utterance, so about three quarters of
stage 0's synthesis went to starting programs. A worker process here loads ``libespeak-ng`` once and initialises it as
the ``espeak-ng`` program does (data path, synchronous output, the pinyin voice); each utterance is then
synthesised in a child forked from that state, which sets the voice variant, rate and pitch and calls
``espeak_Synth`` with the program's flags, and exits. So no state of one utterance reaches the next (the
wave generator's noise comes from C's ``rand()``, reseeded to its start value, and its flutter and echo
buffers are per process), exactly as with one program per utterance; tried and dropped: setting each
voice in the worker before forking (see ``Engine.__init__``). The 22,050 Hz samples come back
through a pipe and are resampled to 16 kHz in the worker by libsox's ``rate`` effect, which is the effect
``sox -D ... -r 16000`` chains (no dither). The wavs are byte-identical to the programs': the test
(tests/test_synthesis_engine.py) compares both ways, and a whole corpus of 32,600 was compared once.

ctypes and not a package: the Python wrappers of espeak-ng on PyPI run the program or return phonemes, and
none lets a process fork from an initialised engine; libsox wrappers bundle their own libsox build, whose
resampler need not match the sox program's. ``libespeak-ng.so.1`` and ``libsox.so.3`` come with the
Debian packages espeak-ng and sox (tools/install.sh); ``available()`` says whether both load, and
``corpus_synthesis.run_jobs`` falls back to the programs when not.
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

ESPEAK_LIB = "libespeak-ng.so.1"
SOX_LIB = "libsox.so.3"
# speak_lib.h / espeak_ng.h constants (stable C ABI of espeak-ng 1.49-1.52)
_SYNCHRONOUS = 0x0001  # ENOUTPUT_MODE_SYNCHRONOUS: samples go to the callback, nothing is played
_RATE, _PITCH = 1, 3  # espeak_PARAMETER
_POS_CHARACTER = 1
_PROGRAM_FLAGS = 0x100 | 0x1000  # espeakCHARS_AUTO | espeakPHONEMES | espeakENDPAUSE, the program's default
_SIGN2 = 1  # sox_encoding_t SOX_ENCODING_SIGN2: signed linear PCM
_CHILD_EXIT = {2: "espeak-ng has no such voice (espeak-ng --voices=variant lists the variants)",
               3: "espeak-ng failed to synthesise", 1: "the synthesis child failed"}


class _Signal(ctypes.Structure):  # sox_signalinfo_t
    _fields_ = [("rate", ctypes.c_double), ("channels", ctypes.c_uint), ("precision", ctypes.c_uint),
                ("length", ctypes.c_uint64), ("mult", ctypes.POINTER(ctypes.c_double))]


class _Encoding(ctypes.Structure):  # sox_encodinginfo_t
    _fields_ = [("encoding", ctypes.c_int), ("bits_per_sample", ctypes.c_uint), ("compression", ctypes.c_double),
                ("reverse_bytes", ctypes.c_int), ("reverse_nibbles", ctypes.c_int), ("reverse_bits", ctypes.c_int),
                ("opposite_endian", ctypes.c_int)]


class _Format(ctypes.Structure):  # the leading fields of sox_format_t (only these are read)
    _fields_ = [("filename", ctypes.c_char_p), ("signal", _Signal), ("encoding", _Encoding)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def available() -> bool:
    """Whether both libraries load (the programs' packages installed them)."""
    try:
        ctypes.CDLL(ESPEAK_LIB)
        ctypes.CDLL(SOX_LIB)
    except OSError:
        return False
    return True


class Engine:
    """One per worker process (it forks): synthesise(pinyin, voice_name, rate, pitch, wav_path)."""

    def __init__(self, default_voice: str, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._libc = ctypes.CDLL(None)
        self._libc.free.argtypes = [ctypes.c_void_p]
        self._espeak = ctypes.CDLL(ESPEAK_LIB)
        self._espeak.espeak_ng_InitializePath(None)
        if self._espeak.espeak_ng_Initialize(None) != 0 or self._espeak.espeak_ng_InitializeOutput(_SYNCHRONOUS, 0, None) != 0:
            raise RuntimeError(f"{ESPEAK_LIB}: initialisation failed (is espeak-ng-data installed?)")
        self._espeak_rate = self._espeak.espeak_ng_GetSampleRate()
        self._chunks: list[bytes] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library holds only the pointer
        self._espeak.espeak_SetSynthCallback(self._callback)
        # The dictionary (1 MB) is loaded once, with the plain pinyin voice; each child then sets its variant
        # from this same state, whatever came before. (Setting each voice here instead, before forking, made
        # the wavs differ from the 138th utterance on, 63 of 2,000 in all: voice loads leave state behind.)
        if self._espeak.espeak_ng_SetVoiceByName(default_voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {default_voice!r}")
        self._sox = _load_sox()

    def _collect(self, wav, num_samples, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * num_samples))
        return 0

    def synthesise(self, pinyin: str, voice_name: str, rate: int, pitch: int, wav_path: Path) -> None:
        """Write ``wav_path`` (``self.sample_rate``, 16-bit mono); raises RuntimeError naming what failed."""
        samples = self._espeak_in_child(pinyin, voice_name, rate, pitch)
        header = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVEfmt " + struct.pack(
            "<IHHIIHH", 16, 1, 1, self._espeak_rate, 2 * self._espeak_rate, 2, 16) + b"data" + struct.pack("<I", len(samples))
        _resample(self._sox, self._libc, header + samples, wav_path, self.sample_rate)

    def _espeak_in_child(self, pinyin: str, voice_name: str, rate: int, pitch: int) -> bytes:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's Python
            code = 1
            try:
                os.close(read_end)
                code = self._child(pinyin, voice_name, rate, pitch, write_end)
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            samples = pipe.read()
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(f"{_CHILD_EXIT.get(code, f'the synthesis child exited with {code}')} "
                               f"(voice {voice_name!r}, rate {rate}, pitch {pitch})")
        return samples

    def _child(self, pinyin: str, voice_name: str, rate: int, pitch: int, fd: int) -> int:
        # C's rand() (the wave generator's noise) as a new program starts it (glibc: "seeded with 1"); a no-op
        # while nothing in the worker calls rand(), a guard should something start to.
        self._libc.srand(1)
        if self._espeak.espeak_ng_SetVoiceByName(voice_name.encode()) != 0:
            return 2
        self._espeak.espeak_SetParameter(_RATE, rate, 0)  # after the voice, as the program sets them
        self._espeak.espeak_SetParameter(_PITCH, pitch, 0)
        text = pinyin.encode()
        self._espeak.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, _PROGRAM_FLAGS, None, None)
        if self._espeak.espeak_ng_Synchronize() != 0:
            return 3
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(b"".join(self._chunks))
        return 0


def _load_sox():
    sox = ctypes.CDLL(SOX_LIB)
    format_p = ctypes.POINTER(_Format)
    sox.sox_open_mem_read.restype = format_p
    sox.sox_open_mem_read.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
    sox.sox_open_write.restype = format_p
    sox.sox_open_write.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Signal), ctypes.POINTER(_Encoding), ctypes.c_char_p,
                                   ctypes.c_void_p, ctypes.c_void_p]
    sox.sox_find_effect.restype = ctypes.c_void_p
    sox.sox_find_effect.argtypes = [ctypes.c_char_p]
    sox.sox_create_effect.restype = ctypes.c_void_p
    sox.sox_create_effect.argtypes = [ctypes.c_void_p]
    sox.sox_effect_options.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    sox.sox_create_effects_chain.restype = ctypes.c_void_p
    sox.sox_create_effects_chain.argtypes = [ctypes.POINTER(_Encoding), ctypes.POINTER(_Encoding)]
    sox.sox_add_effect.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(_Signal), ctypes.POINTER(_Signal)]
    sox.sox_flow_effects.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    sox.sox_delete_effects_chain.argtypes = [ctypes.c_void_p]
    sox.sox_close.argtypes = [format_p]
    sox.sox_get_globals.restype = ctypes.POINTER(ctypes.c_uint)  # sox_globals_t starts with `unsigned verbosity`
    if sox.sox_init() != 0:
        raise RuntimeError(f"{SOX_LIB}: sox_init failed")
    sox.sox_get_globals().contents.value = 1  # failures only: the program's clipping warnings were discarded too
    return sox


def _resample(sox, libc, wav: bytes, out_path: Path, sample_rate: int) -> None:
    """``sox -D -t wav - -r <rate> -b 16 -c 1 -e signed-integer <out>``: input -> rate -> output."""
    buffer = ctypes.create_string_buffer(wav, len(wav))
    source = sox.sox_open_mem_read(buffer, len(wav), None, None, b"wav")
    if not source:
        raise RuntimeError("libsox could not read espeak-ng's samples")
    out_signal = _Signal(rate=sample_rate, channels=1, precision=16, length=0)
    out_encoding = _Encoding(encoding=_SIGN2, bits_per_sample=16)
    target = sox.sox_open_write(str(out_path).encode(), ctypes.byref(out_signal), ctypes.byref(out_encoding), b"wav",
                                None, None)
    if not target:
        sox.sox_close(source)
        raise RuntimeError(f"libsox could not open {out_path} for writing")
    chain = sox.sox_create_effects_chain(ctypes.byref(source.contents.encoding), ctypes.byref(target.contents.encoding))
    try:
        signal = _Signal.from_buffer_copy(source.contents.signal)
        for name, args, out in ((b"input", [ctypes.cast(source, ctypes.c_void_p)], source.contents.signal),
                                (b"rate", [], target.contents.signal),
                                (b"output", [ctypes.cast(target, ctypes.c_void_p)], target.contents.signal)):
            effect = sox.sox_create_effect(sox.sox_find_effect(name))
            argv = (ctypes.c_void_p * max(1, len(args)))(*args)
            ok = sox.sox_effect_options(effect, len(args), argv) == 0 and \
                sox.sox_add_effect(chain, effect, ctypes.byref(signal), ctypes.byref(out)) == 0
            libc.free(effect)  # sox_add_effect copied it, as the program frees its own
            if not ok:
                raise RuntimeError(f"libsox: the {name.decode()} effect failed")
        if sox.sox_flow_effects(chain, None, None) != 0:
            raise RuntimeError(f"libsox: resampling to {out_path} failed")
    finally:
        sox.sox_delete_effects_chain(chain)
        sox.sox_close(target)
        sox.sox_close(source)
