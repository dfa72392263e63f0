#!/usr/bin/python3
"""A real client window painted in one solid colour: probe_window.py TITLE RRGGBB

GTK 3 via Debian's python3-gi + gir1.2-gtk-3.0 (run with /usr/bin/python3).
GDK_BACKEND=wayland -> native Wayland (xdg-shell) client; GDK_BACKEND=x11 -> X11 client (XWayland).
The sway config in wayland_session.sh floats windows titled probe-wl / probe-x11 at known places.
Prints "mapped" on stdout once the first frame has been drawn, then runs until killed.
"""

import sys

import gi

gi.require_version("Gdk", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gdk, GLib, Gtk  # noqa: E402

title, hexcol = sys.argv[1], sys.argv[2].lstrip("#")
GLib.set_prgname(title)  # Wayland app_id / X11 WM_CLASS

win = Gtk.Window(title=title)
win.set_decorated(False)  # no client-side title bar / shadow: the whole surface is the colour
win.set_default_size(300, 200)
# Paint with CSS (no cairo bindings needed: python3-gi-cairo is not required).
css = Gtk.CssProvider()
css.load_from_data(b"window, box { background-color: #%s; background-image: none; }" % hexcol.encode())
Gtk.StyleContext.add_provider_for_screen(Gdk.Screen.get_default(), css, Gtk.STYLE_PROVIDER_PRIORITY_USER)
win.add(Gtk.Box())
win.connect("map-event", lambda *_: GLib.timeout_add(100, lambda: print("mapped", flush=True)))
win.connect("destroy", Gtk.main_quit)
win.show_all()
Gtk.main()
