"""ImageMagick, through Wand: the library bindings, the set-up of a worker process, and what this
installation can do. The pipeline's decisions (what to decode, at what size, which crop) are in
pipeline.py; this module only does what it is told, the same way on ImageMagick 6 and 7.

Every call goes through Wand's own bindings (`wand.api.library`), which Wand types for the major
version it found. Where the two versions differ in what a call means, `MAJOR` chooses, here only.

ImageMagick is not fork-safe (its OpenMP threads), so nothing here runs at import: `init_worker`
runs in each worker after the fork, and the gunicorn master never imports this module.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
import re
import resource
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

# Wand finds MagickWand by trying some 24 names in turn with ctypes.util.find_library, each failed
# try running ldconfig (and gcc) in a subprocess: 0.5-0.7 s of CPU at every worker's start. The
# library's file is looked for here instead, and its name handed to Wand, which tries it first.
LIBRARY_FOLDERS = ("/usr/lib/*-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib",
                   "/opt/homebrew/lib")
LIBRARY_NAME = re.compile(r"^libMagickWand(-\d+\.Q\d+(?:HDRI)?)\.")


def _installed_suffixes() -> list[str]:
    """The suffixes of the MagickWand libraries in the usual folders ("-6.Q16", "-7.Q16HDRI"), plain
    builds first."""
    found = {match.group(1) for folder in LIBRARY_FOLDERS
             for path in glob.glob(os.path.join(folder, "libMagickWand-*"))
             if (match := LIBRARY_NAME.match(os.path.basename(path)))}
    return sorted(found, key=lambda suffix: ("HDRI" in suffix, suffix))


if not os.environ.get("MAGICK_HOME") and not os.environ.get("WAND_MAGICK_LIBRARY_SUFFIX"):
    if suffixes := _installed_suffixes():
        os.environ["WAND_MAGICK_LIBRARY_SUFFIX"] = ";".join(suffixes)

try:
    import wand.resource
    import wand.version
    from wand.api import libmagick, library
    from wand.color import Color
    from wand.exceptions import ResourceLimitError, WandException, WandWarning
    from wand.image import COLORSPACE_TYPES, FILTER_TYPES, Image
    IMPORT_ERROR = None
    MAJOR = wand.version.MAGICK_VERSION_NUMBER >> 8
    LANCZOS = FILTER_TYPES.index("lanczos")
    # Wand has no binding for MagickProfileImage (the same call in 6 and 7).
    library.MagickProfileImage.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p,
                                           ctypes.c_size_t]
    library.MagickProfileImage.restype = ctypes.c_bool
    # Nor for MagickSetProgressMonitor (the same call in 6 and 7): Stopwatch's monitor is set on a
    # wand before it reads, and every image it reads (and their clones) carries it.
    library.MagickSetProgressMonitor.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    library.MagickSetProgressMonitor.restype = ctypes.c_void_p
except ImportError as error:  # the app still starts, and /status_check says what is missing
    IMPORT_ERROR = str(error)
    MAJOR = 0
    Color = Image = library = libmagick = None

    class WandException(Exception):  # noqa: N818 (Wand's name), so that `except` clauses stay valid
        pass

    ResourceLimitError = WandWarning = WandException

POLICY_FOLDER = os.path.dirname(os.path.abspath(__file__))
# A harmless drawing that only the MVG coder reads: decoding it must fail once our policy is in force.
POLICY_PROBE = b"viewbox 0 0 1 1\n"
RESOURCE_NAMES = ("memory", "map", "disk", "area", "width", "height", "thread", "time")
# MagickCore's ExceptionType: 300..399 are warnings, 400 and up errors (the same in 6 and 7).
WARNING, ERROR = 300, 400

log = logging.getLogger(__name__)
TEMPORARY_PREFIX = "imageserver-magick-"


@dataclass(frozen=True)
class SetUp:
    """ImageMagick's set-up in this process (init_worker)."""
    temporary_folder: str       # its temporary files (pixel caches that spill to disk): ours alone
    policy_in_force: bool       # our policy.xml was read (ImageMagick was not used before)
    on_leak: Callable[[], None] | None = None   # when a failed image left some behind (after_failure)


# The one global here: ImageMagick's state is the process's own (it reads its policy once, finds its
# temporary folder in the environment), and a failure deep in a render (after_failure) and
# /status_check (problems) ask what it is. None until init_worker ran in this process.
_in_force: SetUp | None = None


# -- the worker ---------------------------------------------------------------------------------

def init_worker(limits, memory_bytes: int = 512 * 2**20,
                on_leak: Callable[[], None] | None = None) -> SetUp:
    """Put ImageMagick's policy and limits in force in this process. Called once per worker (gunicorn
    worker, `images process`, `images doctor`), after any fork, and before ImageMagick has decoded
    anything: it reads its policy files once, at its first use.

    `limits` is the pipeline's Limits. One thread per worker: the workers already fill the cores, and
    ImageMagick's OpenMP threads are not fork-safe. `on_leak`: what to do once ImageMagick has kept
    memory or temporary files of an image that failed (a gunicorn worker: retire after this request,
    so that the next image meets a fresh worker).
    """
    global _in_force
    os.environ.setdefault("MAGICK_THREAD_LIMIT", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    configured = os.environ.get("MAGICK_CONFIGURE_PATH", "")
    if POLICY_FOLDER not in configured.split(os.pathsep):
        os.environ["MAGICK_CONFIGURE_PATH"] = os.pathsep.join(filter(None, (POLICY_FOLDER, configured)))
    temporary = _own_temporary_folder()
    os.environ["MAGICK_TEMPORARY_PATH"] = temporary
    if IMPORT_ERROR:
        _in_force = SetUp(temporary, False, on_leak)
        return _in_force
    resources = wand.resource.limits
    resources["thread"] = 1
    resources["memory"] = memory_bytes
    resources["map"] = 2 * memory_bytes
    resources["disk"] = 4 * memory_bytes
    # ImageMagick's own limits are a backstop behind ours (which give the clearer answer), and the
    # system's policy.xml may lower them further: ImageMagick then decodes nothing past the header.
    resources["area"] = limits.maximum_animation_pixels
    resources["width"] = 2 * limits.maximum_side
    resources["height"] = 2 * limits.maximum_side
    # No "time" limit: ImageMagick 6 counts it from the process's first image, not per image, and
    # ends the whole process when it runs out (a worker died every minute). The cost model bounds
    # one request instead, and the Stopwatch below stops what it under-priced.
    _in_force = SetUp(temporary, _policy_refuses_mvg(), on_leak)
    return _in_force


def _own_temporary_folder() -> str:
    """A folder of this process's own for ImageMagick's temporary files; those of processes that are
    gone (a worker killed mid-render) are removed."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        if name.startswith(TEMPORARY_PREFIX) and name[len(TEMPORARY_PREFIX):].isdigit():
            pid = int(name[len(TEMPORARY_PREFIX):])
            if pid != os.getpid() and not _alive(pid):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    folder = os.path.join(base, f"{TEMPORARY_PREFIX}{os.getpid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def after_failure() -> None:
    """Called when an image failed, once ImageMagick was told to let it go. Some of ImageMagick's
    coders keep a copy of an image they fail on (its pixel cache, on disk past the memory limit, stays
    mapped and counted against this process's limits): files left in our temporary folder show it.
    They are removed, and the worker is retired."""
    if _in_force is None:
        return
    left = os.listdir(_in_force.temporary_folder)
    if not left:
        return
    log.warning("ImageMagick kept %d temporary files of a failed image: retiring this worker",
                len(left))
    for name in left:
        try:
            os.unlink(os.path.join(_in_force.temporary_folder, name))
        except OSError:
            pass
    if _in_force.on_leak:
        _in_force.on_leak()


def limit_address_space(budget_bytes: int) -> None:
    """A hard backstop behind ImageMagick's own limits: this process may map at most `budget_bytes`
    more than it has now. A decoder that runs away past it fails to allocate (a clean error) instead
    of taking the host's memory. Linux only (elsewhere ImageMagick's own limits stand alone)."""
    if not os.path.exists("/proc/self/status"):
        return
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + budget_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _policy_refuses_mvg() -> bool:
    """True when ImageMagick refuses a coder that our policy forbids: the policy file was read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image(blob=POLICY_PROBE, format="mvg"):
                return False
    except WandException:
        return True


# -- what this installation can do ----------------------------------------------------------------

def problems(required_formats) -> list[str]:
    """What stops ImageMagick from working here for us; empty when all is well."""
    if IMPORT_ERROR:
        return [f"ImageMagick (MagickWand) cannot be loaded: {IMPORT_ERROR}. {install_hint()}"]
    missing = [name for name in required_formats if not reads(name)]
    found = [f"ImageMagick lacks the {name} format. {install_hint()}" for name in missing]
    if _in_force is None:
        found.append("ImageMagick was not set up in this process (images.setup.init_worker did not "
                     "run)")
    elif not _in_force.policy_in_force:
        found.append(f"ImageMagick's policy from {POLICY_FOLDER} is not in force (ImageMagick was "
                     "used before init_worker ran)")
    return found


def install_hint() -> str:
    return ("Install ImageMagick with its MagickWand library and its WebP and HEIF coders: "
            "`make install` (Debian and Ubuntu), or `brew install imagemagick` (macOS)")


def reads(coder: str) -> bool:
    return not IMPORT_ERROR and bool(wand.version.formats(coder.upper()))


def writes(coder: str) -> bool:
    """True when ImageMagick writes `coder` and reads it back as such."""
    return _round_trip(coder) is not None


def reads_faithfully(coder: str) -> bool:
    """True when an image written in `coder` reads back with its colours (ImageMagick 6.9.11's HEIF
    reader, which reads AVIF and HEIC, garbles them). Checked with our own writer, where this
    ImageMagick has one; where it has none, reading is taken on trust."""
    if not reads(coder):
        return False
    colour = _round_trip(coder)
    if colour is None:  # not written here
        return True
    return colour[0] > 200 and max(colour[1:]) < 60


def _round_trip(coder: str) -> tuple | None:
    """A red 16x16 canvas written in `coder` and read back: the (r, g, b) of its middle, or None when
    it cannot be written or does not come back whole. (A blank canvas: making one needs no coder, and
    the policy refuses pseudo-images such as `gradient:`.)"""
    if not reads(coder):
        return None
    try:
        with Image(width=16, height=16, background=Color("red")) as image:
            # Its one colour as a palette first: GIF's writer would otherwise build one, and ImageMagick
            # 6 fills a 128 MB colour cache to do so (0.2-0.6 s at every worker's start).
            to_palette(image, dither=False)
            blob = image.make_blob(coder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_blob(blob, coder) as back:
                if (back.width, back.height) != (16, 16):
                    return None
                middle = back[8, 8]
                return tuple(round(255 * value) for value in (middle.red, middle.green, middle.blue))
    except WandException:
        return None


def writes_alpha(coder: str) -> bool:
    """Whether ImageMagick keeps transparency when it writes `coder`: its AVIF writer does from 7 on
    (6's writes transparent pixels as black)."""
    return coder != "avif" or MAJOR >= 7


def build() -> dict:
    """Which ImageMagick this is: version, quantum depth, HDRI, OpenMP, and its library file."""
    if IMPORT_ERROR:
        return {}
    return {"version": wand.version.MAGICK_VERSION, "major": MAJOR,
            "quantum_depth": wand.version.QUANTUM_DEPTH, "hdri": bool(wand.version.MAGICK_HDRI),
            "openmp": "OpenMP" in wand.version.MAGICK_VERSION_FEATURES,
            "library": getattr(library, "_name", "")}


def resource_limits() -> dict:
    """ImageMagick's limits in force in this process (after init_worker and its policy.xml). No
    limit is the largest number, as ImageMagick 6 says it (7 says 0 for no time limit)."""
    limits = {name: wand.resource.limits[name] for name in RESOURCE_NAMES}
    if MAJOR >= 7 and limits["time"] == 0:
        limits["time"] = 2**63 - 1
    return limits


# -- the backstop: work stopped past its time ------------------------------------------------------

class Stopped(Exception):  # noqa: N818 (it is not a failure of ImageMagick's)
    """ImageMagick's work was stopped by a Stopwatch, after `milliseconds` of CPU."""

    def __init__(self, milliseconds: float):
        super().__init__(f"stopped after {milliseconds:.0f} ms of CPU")
        self.milliseconds = milliseconds


class Stopwatch:
    """Stops ImageMagick's work in this thread once it has used `limit_ms` of CPU (None: never).

    ImageMagick calls a progress monitor as it goes (each row decoded, resized or encoded, each frame)
    and gives up its operation when the monitor answers false; it is the one way to stop it inside a
    call, cleanly, with its memory and temporary files let go. The monitor is set on every wand
    `open_blob` makes; it reads the clock (this thread's CPU time: a busy neighbour does not count)
    every CHECK_EVERY calls. On the way out, work that was stopped raises Stopped, whatever error the
    stopped call left behind. (No ImageMagick "time" limit: see init_worker.)"""
    CHECK_EVERY = 16

    def __init__(self, limit_ms: float | None):
        self.limit_ms = limit_ms

    def __enter__(self) -> Stopwatch:
        self.saved = getattr(_watch, "state", None)
        started = time.thread_time()
        deadline = float("inf") if self.limit_ms is None else started + self.limit_ms / 1000
        _watch.state = _WatchState(started, deadline)
        return self

    def __exit__(self, kind, error, trace) -> None:
        state = _watch.state
        _watch.state = self.saved
        if state.stopped:
            raise Stopped(1000 * (time.thread_time() - state.started)) from None


class _WatchState:
    __slots__ = ("started", "deadline", "calls", "stopped")

    def __init__(self, started: float, deadline: float):
        self.started, self.deadline, self.calls, self.stopped = started, deadline, 0, False


_watch = threading.local()


def _progress(text, offset, extent, client_data) -> bool:
    """ImageMagick's progress monitor: false (stop) once this thread's Stopwatch has run out."""
    state = getattr(_watch, "state", None)
    if state is None:
        return True
    if state.stopped:
        return False
    state.calls += 1
    if state.calls % Stopwatch.CHECK_EVERY == 0 and time.thread_time() > state.deadline:
        state.stopped = True
        return False
    return True


# Kept for the life of the process: ImageMagick holds its address. The text is taken as a bare
# pointer (never read): a bytes object made on every row would cost more than the check.
_MONITOR = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_longlong, ctypes.c_ulonglong,
                            ctypes.c_void_p)(_progress)


def unwatch(image: Image) -> None:
    """Take the Stopwatch's monitor off a decoded image, every frame of it (and off its wand, for
    later reads): what is done to it from here on calls back no more. A ctypes callback costs about
    1 us, and ImageMagick makes one per row decoded, per row and per column resized, per row
    encoded: 8-10% of a small render. The pipeline calls this once the file's content has had its
    say (see pipeline._priced_by_size_from_here)."""
    library.MagickSetProgressMonitor(image.wand, None, None)
    no_monitor = _core("SetImageProgressMonitor", ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_void_p)
    following = _core("GetNextImageInList", ctypes.c_void_p, ctypes.c_void_p)
    frame = _core("GetFirstImageInList", ctypes.c_void_p, ctypes.c_void_p)(
        library.GetImageFromMagickWand(image.wand))
    while frame:
        no_monitor(frame, None, None)
        frame = following(frame)


# -- decoding -------------------------------------------------------------------------------------

def open_blob(data: bytes, coder: str, first_frame_only: bool = False, size_hint: str = "",
              ping: bool = False) -> Image:
    """Decode `data` with the named coder only: the "jpeg:" prefix stops ImageMagick's own guess.
    With `ping`, only the headers are read (no pixel is decoded)."""
    image = Image()
    try:
        library.MagickSetProgressMonitor(image.wand, ctypes.cast(_MONITOR, ctypes.c_void_p), None)
        if size_hint:
            image.options["jpeg:size"] = size_hint
        filename = f"{coder}:buffer" + ("[0]" if first_frame_only else "")
        library.MagickSetFilename(image.wand, filename.encode())
        if ping:
            library.MagickPingImageBlob(image.wand, data, len(data)) or image.raise_exception()
        else:
            image.read(blob=data)
    except BaseException:
        image.close()
        raise
    return image


def frame_count(image: Image) -> int:
    return library.MagickGetNumberImages(image.wand)


def decoder_problem(image: Image) -> tuple:
    """(severity, reason) of what the decoder reported while reading `image`: a warning (libjpeg's
    "Premature end of JPEG file", ...; severity 300 to 399) or an error it still gave pixels for
    (GIF's "invalid colormap index"; 400 and up), or (0, "") for nothing. ImageMagick 7 files it on
    the wand (where Wand raises an error at the read itself); 6 files it on the image, where its wand
    never looks, and only MagickCore's GetImageException (6 only) collects it."""
    if MAJOR >= 7:
        severity = ctypes.c_int()
        text = library.MagickGetException(image.wand, ctypes.byref(severity))
        try:
            reason = ctypes.string_at(text).decode("utf-8", "replace") if text else ""
        finally:
            if text:
                library.MagickRelinquishMemory(text)
        library.MagickClearException(image.wand)
        return (severity.value, reason) if severity.value >= WARNING else (0, "")
    pointer = library.GetImageFromMagickWand(image.wand)
    if not pointer:
        return 0, ""
    info = _core("AcquireExceptionInfo", ctypes.POINTER(_ExceptionInfo))()
    try:
        _core("GetImageException", None, ctypes.c_void_p, ctypes.POINTER(_ExceptionInfo))(pointer, info)
        if info.contents.severity >= WARNING:
            return info.contents.severity, (info.contents.reason or b"").decode("utf-8", "replace")
        return 0, ""
    finally:
        _core("DestroyExceptionInfo", ctypes.c_void_p, ctypes.POINTER(_ExceptionInfo))(info)


class _ExceptionInfo(ctypes.Structure):
    """The head of MagickCore's ExceptionInfo (the same in 6 and 7): all we read of it."""
    _fields_ = [("severity", ctypes.c_int), ("error_number", ctypes.c_int),
                ("reason", ctypes.c_char_p), ("description", ctypes.c_char_p)]


@functools.cache
def _core(name: str, result, *arguments):
    """A MagickCore function, typed for ctypes (once: every decode calls these)."""
    function = getattr(libmagick, name)
    function.argtypes, function.restype = list(arguments), result
    return function


# -- pixel work (straight to MagickWand: Wand's methods ask ImageMagick for the MIME type on every
# call, about 1 ms each) ---------------------------------------------------------------------------

def crop(image: Image, left: int, top: int, width: int, height: int) -> None:
    library.MagickCropImage(image.wand, width, height, left, top) or image.raise_exception()


def resize_lanczos(image: Image, width: int, height: int, support: float | None = None) -> None:
    """A Lanczos resize; `support`: the filter's reach in source pixels (its window), when not
    Lanczos's own 3 (the "filter:support" artifact, which 6 and 7 both read). Wand's binding of
    MagickResizeImage takes 6's blur argument on both versions (7 has none, and ignores it), so it
    is given 1.0: no blur."""
    if support is not None:
        library.MagickSetImageArtifact(image.wand, b"filter:support", repr(support).encode())
    library.MagickResizeImage(image.wand, width, height, LANCZOS, 1.0) or image.raise_exception()


def box_shrink(image: Image, width: int, height: int) -> None:
    """A box average (MagickScaleImage): a fraction of a Lanczos pass's cost."""
    library.MagickScaleImage(image.wand, width, height) or image.raise_exception()


def to_palette(image: Image, dither: bool) -> None:
    """At most 256 colours (a palette), chosen by ImageMagick's colour tree at its own depth.
    Without `dither`, no 128 MB colour cache is filled (ImageMagick 6's ditherer fills one)."""
    image.quantize(256, "srgb", 0, dither, False)


def convert_profile(image: Image, icc: bytes) -> bool:
    """Convert the pixels from the image's embedded ICC profile to `icc` (colour-managed, unlike
    Wand's profiles[...] = which only attaches a profile). False, with the pixels left as they were,
    when ImageMagick cannot apply the embedded profile (lcms cannot read it, or it does not fit the
    pixels); an error only when it ran out of a resource."""
    if library.MagickProfileImage(image.wand, b"icc", icc, len(icc)):
        return True
    error = image.get_exception()
    if error is not None and exhausted(error):
        raise error
    return False


# MagickCore's StorageType for 8-bit values (the same in 6 and 7), and how many bytes of pixels
# map_rgb takes out of ImageMagick at a time (a band of rows: a copy of a whole big output would
# double its memory).
CHAR_PIXEL = 1
BAND_BYTES = 2**20


def map_rgb(image: Image, convert: Callable[[ctypes.Array, int], None]) -> None:
    """Hand the red, green and blue of every pixel of `image`, as 8-bit values, to `convert`, which
    changes them in place (a ctypes buffer of `count` pixels, 3 bytes each), and put them back: a
    band of rows at a time, alpha left as it was (ImageMagick 6 and 7 both import into the pixels
    in place, other channels untouched)."""
    width, height = image.width, image.height
    rows = max(1, BAND_BYTES // (3 * width))
    band = (ctypes.c_char * (3 * width * min(rows, height)))()
    for top in range(0, height, rows):
        count = min(rows, height - top)
        library.MagickExportImagePixels(image.wand, 0, top, width, count, b"RGB", CHAR_PIXEL,
                                        band) or image.raise_exception()
        convert(band, width * count)
        library.MagickImportImagePixels(image.wand, 0, top, width, count, b"RGB", CHAR_PIXEL,
                                        band) or image.raise_exception()


def mark_srgb(image: Image) -> None:
    """Say that `image`'s pixels are now sRGB (they are not converted) and drop its ICC profile, as
    MagickProfileImage leaves an image it converted (but for the sRGB profile it attaches, which
    the pipeline strips anyway)."""
    library.MagickSetImageColorspace(image.wand, COLORSPACE_TYPES.index("srgb")) or image.raise_exception()
    library.MagickProfileImage(image.wand, b"icc", None, 0)


# Words (spaces taken out, lower case) in ImageMagick's messages of a resource run out, as its tags
# ("MemoryAllocationFailed", "WidthOrHeightExceedsLimit", "CacheResourcesExhausted",
# "TimeLimitExceeded", "ListLengthExceedsLimit", ...) or in their English wording.
RESOURCE_WORDS = ("memory", "cache", "limit", "exhausted", "allocat", "toolarge", "toomany")


def exhausted(error: BaseException) -> bool:
    """True when `error` says that ImageMagick ran out of a resource: memory, its pixel cache, a
    limit in force. ImageMagick files other failures at that severity too (a colour profile that lcms
    cannot read is a ResourceLimitError "ColorspaceColorProfileMismatch"): those are not. (Wand's
    ResourceLimitError is a MemoryError too: asked first.)"""
    if isinstance(error, ResourceLimitError):
        words = str(error).split(" @ ")[0].replace(" ", "").lower()
        return any(word in words for word in RESOURCE_WORDS)
    return isinstance(error, MemoryError) and not isinstance(error, WandException)
