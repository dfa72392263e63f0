"""A real X server for tests: Xvfb on a display it picks itself, and painters that draw on it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

W, H = 1920, 1080


def end_process(proc: subprocess.Popen) -> None:
    """Close stdin (the child's cue to exit), wait, kill if it hangs, close every pipe."""
    if proc.stdin and not proc.stdin.closed:
        proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe:
            pipe.close()


PAINTER = textwrap.dedent(
    """
    import sys, tkinter
    root = tkinter.Tk()
    root.overrideredirect(True)
    w, h = root.winfo_screenwidth(), root.winfo_screenheight()
    root.geometry(f"{w}x{h}+0+0")
    canvas = tkinter.Canvas(root, width=w, height=h, highlightthickness=0, borderwidth=0, bg="#000000")
    canvas.pack()
    def settle():
        for _ in range(3):
            root.update_idletasks()
            root.update()
        root.winfo_pointerxy()  # a round trip: the server has drawn everything sent before it
    settle()
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "fill":
            canvas.delete("all")
            canvas.configure(bg=args[0])
        elif cmd == "rect":
            x, y, rw, rh = map(int, args[:4])
            canvas.create_rectangle(x, y, x + rw, y + rh, fill=args[4], outline="")
        settle()
        print("ok", flush=True)
    """
)


def have_tk() -> bool:
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return False
    return True


class Xvfb:
    def __init__(self, width=W, height=H) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        number = b""
        deadline = time.monotonic() + 30
        with os.fdopen(read_fd, "rb") as pipe:  # Xvfb writes the display number once it is ready
            while not number.endswith(b"\n") and time.monotonic() < deadline:
                chunk = pipe.read(1)
                if not chunk:
                    break
                number += chunk
        if not number.strip():
            self.stop()
            pytest.fail("Xvfb did not start (no display number on -displayfd)")
        self.display = f":{int(number)}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Painter:
    def __init__(self, display: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PAINTER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "DISPLAY": display},
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def __call__(self, *commands: str) -> None:
        for cmd in commands:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline().strip() == "ok"

    def stop(self) -> None:
        end_process(self.proc)


class XlibPainter:
    """Fallback without tkinter: the same commands, drawn on the root window through libX11."""

    def __init__(self, display: str) -> None:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("X11")
        if not name:
            pytest.skip("neither tkinter nor libX11 is available to draw on the X server")
        x = self.x = ctypes.CDLL(name)
        x.XOpenDisplay.restype = ctypes.c_void_p
        x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x.XDefaultRootWindow.restype = ctypes.c_ulong
        x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        x.XCreateGC.restype = ctypes.c_void_p
        x.XCreateGC.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_void_p]
        x.XSetForeground.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong]
        x.XFillRectangle.argtypes = (
            [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p] + [ctypes.c_int] * 2 + [ctypes.c_uint] * 2
        )
        x.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x.XFreeGC.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        x.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self.dpy = x.XOpenDisplay(display.encode())
        assert self.dpy, f"cannot open {display}"
        self.root = x.XDefaultRootWindow(self.dpy)
        self.gc = x.XCreateGC(self.dpy, self.root, 0, None)

    def __call__(self, *commands: str) -> None:
        for cmd in commands:
            op, *args = cmd.split()
            box = (0, 0, W, H) if op == "fill" else tuple(map(int, args[:4]))
            self.x.XSetForeground(self.dpy, self.gc, int(args[-1].lstrip("#"), 16))  # 24-bit TrueColor
            self.x.XFillRectangle(self.dpy, self.root, self.gc, *box)
            self.x.XSync(self.dpy, 0)  # a round trip: drawn before this returns

    def stop(self) -> None:
        self.x.XFreeGC(self.dpy, self.gc)
        self.x.XCloseDisplay(self.dpy)
