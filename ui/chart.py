"""The loss chart as a small inline SVG: raw points and an exponentially smoothed line.

Drawn here rather than with a plotting library so it costs no start-up time and updates in
place several times a second.
"""

from __future__ import annotations

import html
import math

WIDTH, HEIGHT = 640, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 12, 12, 28
MAX_DRAWN = 1500  # a long run is thinned for drawing; the smoothing still sees every point


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard-style exponential moving average with bias correction."""
    result, average = [], 0.0
    for index, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        result.append(average / (1 - weight ** index))
    return result


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    step = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(step))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= step),
               default=10 * magnitude)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def loss_chart(points: list[tuple[int, float]], weight: float = 0.9) -> str:
    """An SVG chart of (step, loss) points; an empty-state note when there are none."""
    finite = [(s, v) for s, v in points if math.isfinite(v)]
    if not finite:
        return ('<div class="loss-chart" data-points="0"><p class="muted">The loss chart '
                'fills in as steps are trained.</p></div>')
    steps = [s for s, _ in finite]
    raw = [v for _, v in finite]
    smoothed = smooth(raw, weight)
    x_low, x_high = min(steps), max(steps)
    y_low, y_high = min(raw), max(raw)
    if y_high - y_low < 1e-12:
        y_low, y_high = y_low - 0.5 * abs(y_low or 1), y_high + 0.5 * abs(y_high or 1)
    span_x = max(1, x_high - x_low)
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(step: float) -> float:
        return PAD_LEFT + (step - x_low) / span_x * plot_w

    def y(value: float) -> float:
        return PAD_TOP + (1 - (value - y_low) / (y_high - y_low)) * plot_h

    stride = max(1, len(finite) // MAX_DRAWN)
    drawn = range(0, len(finite), stride)
    raw_line = " ".join(f"{x(steps[i]):.1f},{y(raw[i]):.1f}" for i in drawn)
    smooth_line = " ".join(f"{x(steps[i]):.1f},{y(smoothed[i]):.1f}" for i in drawn)
    grid = []
    for tick in _ticks(y_low, y_high):
        grid.append(f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y(tick):.1f}" '
                    f'y2="{y(tick):.1f}" class="grid"/><text x="{PAD_LEFT - 6}" y="{y(tick) + 4:.1f}" '
                    f'text-anchor="end">{_fmt(tick)}</text>')
    for tick in _ticks(x_low, x_high) if x_high > x_low else [x_low]:
        grid.append(f'<text x="{x(tick):.1f}" y="{HEIGHT - 8}" text-anchor="middle">{int(tick)}</text>')
    marker = "" if len(finite) > 1 else \
        f'<circle cx="{x(steps[0]):.1f}" cy="{y(raw[0]):.1f}" r="3" class="raw-dot"/>'
    title = html.escape(f"{len(finite)} points; last loss {raw[-1]:.4f}, smoothed {smoothed[-1]:.4f}")
    return (
        f'<div class="loss-chart" data-points="{len(finite)}" data-last="{raw[-1]:.6g}">'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}">'
        f'<title>{title}</title>{"".join(grid)}'
        f'<polyline points="{raw_line}" class="raw"/>'
        f'<polyline points="{smooth_line}" class="smooth"/>{marker}</svg>'
        f'<div class="legend"><span class="raw-key">loss</span> '
        f'<span class="smooth-key">smoothed ({weight:g})</span> · step {steps[-1]}: '
        f'{raw[-1]:.4f} (smoothed {smoothed[-1]:.4f})</div></div>'
    )


CHART_CSS = """
.loss-chart svg { width: 100%; max-width: 900px; height: auto; font-size: 11px; }
.loss-chart svg text { fill: var(--body-text-color-subdued); }
.loss-chart .grid { stroke: var(--border-color-primary); stroke-width: 1; }
.loss-chart .raw { fill: none; stroke: #9ec5fe; stroke-width: 1; }
.loss-chart .raw-dot { fill: #3b82f6; }
.loss-chart .smooth { fill: none; stroke: #f97316; stroke-width: 2; }
.loss-chart .legend { font-size: 12px; color: var(--body-text-color-subdued); }
.loss-chart .raw-key::before { content: ""; display: inline-block; width: 14px; height: 3px;
  background: #9ec5fe; margin-right: 4px; vertical-align: middle; }
.loss-chart .smooth-key::before { content: ""; display: inline-block; width: 14px; height: 3px;
  background: #f97316; margin-right: 4px; vertical-align: middle; }
"""
