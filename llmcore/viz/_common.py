"""Plumbing shared by the viewers: lazy imports, figures without pyplot, explorers that redraw into an Output.

Nothing here imports matplotlib, numpy or ipywidgets at module level: ``from llmcore import viz`` works
with torch alone, and the first figure or widget asked for raises an :class:`ImportError` that says
what to install.
"""

from __future__ import annotations

import base64
import functools
import importlib
import io
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

INSTALL_HINT = "install the course extra: pip install -e '.[course]' (it brings matplotlib>=3.7 and ipywidgets>=8)"

# One resolution for every picture a widget shows: small enough that a 64 x 64 mask redraws in well
# under 200 ms, large enough to read token labels.
WIDGET_DPI = 80
# The widest picture, in inches: 800 pixels at WIDGET_DPI, what a notebook's output area shows
# unscaled beside JupyterLab's side panel. A wider PNG is shrunk to fit, and its labels with it.
MAX_FIGURE_WIDTH = 10.0

# Cells kept by a mask are drawn in this colour, removed ones in the light grey.
KEEP_COLOR = "#2f5d9e"
DROP_COLOR = "#eeeeee"
DIFF_COLOR = (0.86, 0.15, 0.15, 0.9)  # a learner's mask keeps a cell the reference hides
MISSING_COLOR = (0.98, 0.72, 0.1, 0.95)  # a learner's mask hides a cell the reference keeps


def require(module: str, feature: str) -> Any:
    """Import ``module`` or raise an ImportError naming ``feature`` and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        raise ImportError(f"{feature} needs {package}, which is not installed; {INSTALL_HINT}") from error


@functools.cache
def _figure_class() -> type:
    """A :class:`matplotlib.figure.Figure` that also shows itself in a notebook without pyplot.

    Made once, on first use (matplotlib is imported only then), and kept by the cache rather than in
    a module global: a grading kernel treats a reassigned llmcore attribute as tampering.
    """
    figure_module = require("matplotlib.figure", "llmcore.viz")

    class VizFigure(figure_module.Figure):
        """A plain matplotlib Figure on the Agg canvas, never registered with pyplot.

        ``_repr_png_`` lets IPython show it as the value of a cell even where no pyplot backend
        registered a formatter (where one did, that formatter wins and shows the same picture).
        """

        def _repr_png_(self) -> bytes:
            return figure_png(self)

    return VizFigure


def new_figure(width: float, height: float) -> Any:
    """A figure of ``width`` x ``height`` inches on the non-interactive Agg canvas (no pyplot state).

    Constrained layout keeps titles and tick labels apart. Its dpi is :data:`WIDGET_DPI`, what the
    widgets show; pass ``dpi=`` to ``savefig`` for sharper files.
    """
    backend_agg = require("matplotlib.backends.backend_agg", "llmcore.viz")
    figure = _figure_class()(figsize=(width, height), dpi=WIDGET_DPI, layout="constrained")
    backend_agg.FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Any) -> bytes:
    """The PNG bytes of ``figure`` at its own dpi, rendered in one Agg pass.

    ``savefig`` draws a constrained-layout figure twice (once to lay it out, once to print); drawing
    the canvas once and encoding its pixels halves the redraw time of a widget.
    """
    backend_agg = require("matplotlib.backends.backend_agg", "llmcore.viz")
    canvas = figure.canvas if isinstance(figure.canvas, backend_agg.FigureCanvasAgg) else backend_agg.FigureCanvasAgg(figure)
    canvas.draw()
    return _canvas_png(canvas)


def _canvas_png(canvas: Any) -> bytes:
    """Encode what an Agg canvas holds now."""
    image_module = require("PIL.Image", "llmcore.viz")
    width, height = canvas.get_width_height(physical=True)
    image = image_module.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    image.save(buffer, format="png", compress_level=3)
    return buffer.getvalue()


class BlitScene:
    """A figure whose static parts are rendered once; each redraw repaints only the artists that change.

    The first :meth:`render` lays everything out (constrained layout places titles and labels),
    freezes the layout, renders the figure without the ``dynamic`` artists and keeps that picture as
    the background. Later renders restore the background and draw the dynamic artists on top (Agg
    blitting), so ticks, labels and axes - most of matplotlib's drawing time - are not drawn again.
    The figure stays an ordinary Figure: ``savefig`` draws every artist.
    """

    def __init__(self, figure: Any, dynamic: Sequence[Any], key: Any = None) -> None:
        self.figure, self.dynamic, self.key = figure, list(dynamic), key
        self.background: Any = None

    def render(self) -> bytes:
        canvas = self.figure.canvas
        if self.background is None:
            self.figure.draw_without_rendering()  # constrained layout, no pixels
            self.figure.set_layout_engine("none")  # keep the positions constrained layout found
            # Axes.draw moves a title above whatever it finds at the top; with the title hidden it
            # finds nothing sensible, so the titles keep the place the full draw gave them.
            placed = [(artist, artist.get_position()) for artist in self.dynamic if hasattr(artist, "get_position")
                      and hasattr(artist, "get_text")]
            for artist in self.dynamic:
                artist.set_visible(False)
            canvas.draw()
            self.background = canvas.copy_from_bbox(self.figure.bbox)
            for artist in self.dynamic:
                artist.set_visible(True)
            for artist, position in placed:
                artist.set_position(position)
        canvas.restore_region(self.background)
        for artist in self.dynamic:
            self.figure.draw_artist(artist)
        return _canvas_png(canvas)


def numpy() -> Any:
    return require("numpy", "llmcore.viz")


def to_numpy(tensor: Tensor) -> Any:
    """A detached CPU numpy copy (bool stays bool; bfloat16/half become float32)."""
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    return tensor.numpy()


def set_position_ticks(axis: Any, which: str, count: int, labels: Sequence[str] | None = None, *,
                       fontsize: float = 8) -> None:
    """Ticks on ``which`` ("x" or "y") of ``axis``: every position up to 12, else at most 12 at a round step.

    ``fontsize`` (points) applies to token labels; at :data:`WIDGET_DPI` one point is 1.1 pixels.
    """
    if labels is not None:
        if len(labels) != count:
            raise ValueError(f"{len(labels)} token labels for {count} positions on the {which} axis")
        positions = list(range(count))
        rotation = 90 if which == "x" and max((len(str(label)) for label in labels), default=0) > 2 else 0
        if which == "x":
            axis.set_xticks(positions, [str(label) for label in labels], rotation=rotation, fontsize=fontsize)
        else:
            axis.set_yticks(positions, [str(label) for label in labels], fontsize=fontsize)
        return
    step = next(s for s in (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256, 500, 10**9) if count / s <= 12)
    positions = list(range(0, count, step))
    (axis.set_xticks if which == "x" else axis.set_yticks)(positions)


def squeeze_to_matrix(tensor: Tensor, function: str, what: str = "mask") -> Tensor:
    """``[..., Q, KV]`` with leading dimensions of size 1 → ``[Q, KV]``; anything else is an error."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{function}: {what} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() < 2 or any(size != 1 for size in tensor.shape[:-2]):
        raise ValueError(
            f"{function}: {what} must be [Q, KV] (or [1, 1, Q, KV] as dense_mask returns it), got shape {tuple(tensor.shape)}"
        )
    return tensor.reshape(tensor.shape[-2], tensor.shape[-1])


class Explorer:
    """Controls, an info line and an Output that shows the current figure as a PNG.

    Subclasses fill ``controls`` (name → ipywidgets control), call :meth:`_finish` with the layout,
    implement :meth:`_draw` (returns the figure and an info line, optionally the PNG) and may
    implement :meth:`_sync_controls` (ranges and visibility that follow other controls). Every
    change of a control's value redraws once; :meth:`hold` batches several changes into one redraw.
    Errors while drawing are shown in ``info`` and kept in ``last_error``, never raised from a
    callback (where the learner would not see them).

    The picture goes into ``output.outputs`` as one ``display_data`` PNG, replaced in a single step,
    so the browser never shows an empty frame between two pictures and tests outside a kernel see
    the same data the browser gets (``.widget-output img``).
    """

    def __init__(self) -> None:
        widgets = require("ipywidgets", "llmcore.viz widgets")
        require("matplotlib", "llmcore.viz widgets")  # fail here, not inside the first redraw
        self.controls: dict[str, Any] = {}
        self.output = widgets.Output(layout=widgets.Layout(min_height="120px"))
        self.info = widgets.HTML()
        self.widget: Any = None
        self.last_figure: Any = None
        self.last_png: bytes | None = None
        self.last_error: BaseException | None = None
        self.redraws = 0
        self._held = 0
        self._syncing = False

    # -- construction ------------------------------------------------------------------------------

    def _finish(self, rows: Sequence[Any]) -> None:
        widgets = require("ipywidgets", "llmcore.viz widgets")
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.widget = widgets.VBox([*rows, self.info, self.output])
        self.redraw()

    def show_only(self, names: Sequence[str], among: Sequence[str]) -> None:
        """Display the controls in ``names`` and hide the others of ``among``."""
        for name in among:
            self.controls[name].layout.display = "" if name in names else "none"

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Change several controls and redraw once, at the end."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if not self._held:
            self.redraw()

    def _on_change(self, change: dict) -> None:
        if self._syncing:  # a range or value adjusted by _sync_controls: the change that caused it redraws
            return
        self._syncing = True
        try:
            self._sync_controls()
        finally:
            self._syncing = False
        if not self._held:
            self.redraw()

    def _sync_controls(self) -> None:
        """Make ranges and visibility follow the other controls (subclasses); runs after every change."""

    # -- drawing -----------------------------------------------------------------------------------

    def _draw(self) -> tuple[Any, ...]:
        """``(figure, info html)``, or ``(figure, info html, png)`` when the subclass rendered the PNG itself."""
        raise NotImplementedError

    def redraw(self) -> None:
        """Recompute from the controls and replace the picture (errors are shown, not raised)."""
        try:
            drawn = self._draw()
        except Exception as error:  # noqa: BLE001 - a widget callback must never die silently
            self.last_error = error
            self.info.value = f"<span style='color:#b00020'><b>{type(error).__name__}</b>: {_escape(str(error))}</span>"
            self.output.outputs = ()
            return
        self.last_error = None
        figure, info = drawn[0], drawn[1]
        png = drawn[2] if len(drawn) > 2 else figure_png(figure)
        self.last_figure, self.last_png = figure, png
        self.info.value = info
        self.output.outputs = (
            {
                "output_type": "display_data",
                "data": {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": repr(figure)},
                "metadata": {},
            },
        )
        self.redraws += 1

    def figure(self) -> Any:
        """The figure drawn last (a matplotlib Figure)."""
        return self.last_figure

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def int_slider(name: str, value: int, low: int, high: int, description: str | None = None, step: int = 1) -> Any:
    widgets = require("ipywidgets", "llmcore.viz widgets")
    return widgets.IntSlider(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description or name,
        continuous_update=False,
        style={"description_width": "initial"},
    )


def dropdown(options: Any, value: Any, description: str) -> Any:
    widgets = require("ipywidgets", "llmcore.viz widgets")
    return widgets.Dropdown(options=options, value=value, description=description, style={"description_width": "initial"})


def rows_of(controls: Sequence[Any], per_row: int = 3) -> list[Any]:
    widgets = require("ipywidgets", "llmcore.viz widgets")
    return [widgets.HBox(list(controls[i : i + per_row])) for i in range(0, len(controls), per_row)]


def call_with_accepted(function: Callable[..., Any], *args: Any, **params: Any) -> Any:
    """Call ``function(*args, **params)`` passing only the keyword arguments it declares (all with ``**kwargs``)."""
    import inspect

    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return function(*args, **params)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return function(*args, **params)
    accepted = {name: value for name, value in params.items() if name in signature.parameters}
    return function(*args, **accepted)
