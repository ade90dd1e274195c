"""What an analysis found: the verdict first, then g2 with fits, τ and β, intensity, two-time.

Plots are the library's matplotlib figures (:mod:`speckle.plots`) rendered to PNG and shown in
``ipywidgets.Image`` widgets: no pyplot state, nothing from a CDN, and a widget value can be
replaced from the analysis thread in one message.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np

from ... import plots
from ...io.tables import fit_summary
from ...xpcs.outliers import format_frames
from ..common._common import MessageBox, note_html, styled
from ..common.downloads import links_html, render_png
from ..common.export import ResultFiles, save_twotime_png, twotime_png_name
from ..common.server import base_url as default_base_url

__all__ = ["ResultsView", "fit_table_rows", "forecast_html", "verdict_html"]

LEVEL_STYLE = {
    "good": ("#1e7e34", "#e8f5ec", "GOOD"),
    "marginal": ("#9a6700", "#fff5d6", "MARGINAL"),
    "bad": ("#b00020", "#fdecee", "BAD"),
}


def _problem_html(problem, with_action: bool) -> str:
    fg = LEVEL_STYLE.get(problem.level, ("#333",))[0]
    action = (f" <span style='color:#333'>→ {html.escape(problem.action)}</span>"
              if with_action and problem.action else "")
    details = "".join(f"<li>{html.escape(f.message)}</li>" for f in problem.findings)
    return (f"<details class='speckle-problem' style='margin:3px 0'><summary style='cursor:"
            f"pointer'><b style='color:{fg}'>{problem.level}</b> {html.escape(problem.headline)}"
            f"{action}</summary><ul style='margin:2px 0 4px 0;padding-left:22px;font-size:12px;"
            f"color:#444'>{details}</ul></details>")


def _frames_cell(frames, seconds, lower=False) -> str:
    if frames is None:
        return "—"
    return f"{'≥ ' if lower else ''}{frames:,} ({seconds:.3g} s)" if seconds is not None \
        else f"{'≥ ' if lower else ''}{frames:,}"


def forecast_html(verdict) -> str:
    """How much longer to count, per bin, as a small folded table ("" without forecasts)."""
    forecasts = [b.forecast for b in verdict.bins if b.forecast is not None]
    if not forecasts:
        return ""
    target = forecasts[0].target_snr
    heads = [verdict.noun, "g2 S/N now", f"frames for S/N {target:g}",
             "frames for the decay inside", "count in all"]
    rows = []
    for f in forecasts:
        secs = f.seconds_needed / f.frames_needed if f.frames_needed else None

        def cell(n, lower=False, secs=secs):
            return _frames_cell(n, None if secs is None or n is None else n * secs, lower)

        if f.frames_needed is None:
            total = html.escape(f.note)
        elif f.more_frames == 0:
            total = "long enough"
        else:
            total = (f"<b>{cell(f.frames_needed, f.at_least)}</b>, "
                     f"{f.more_frames:,} more")
        values = [html.escape(f.label), f"{f.snr:.3g}", cell(f.frames_for_snr),
                  cell(f.frames_for_decay, f.decay_lower_bound), total]
        rows.append("<tr class='speckle-forecast-row'>" + "".join(
            f"<td style='padding:1px 8px;vertical-align:top'>{v}</td>" for v in values) + "</tr>")
    th = "".join(f"<th style='text-align:left;padding:1px 8px;border-bottom:1px solid #999'>"
                 f"{html.escape(h)}</th>" for h in heads)
    needed = any(f.more_frames for f in forecasts)
    title = ("How much longer to count (at this count rate)" if needed
             else "Long enough: no bin needs more frames")
    return (f"<details class='speckle-forecast' style='margin-top:6px'{' open' if needed else ''}>"
            f"<summary style='cursor:pointer'><b>{title}</b></summary>"
            f"<table style='border-collapse:collapse;font-size:12px;margin-top:3px'>"
            f"<thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table></details>")


def verdict_html(verdict) -> str:
    """The verdict as HTML: the level and the one-line conclusion, what to do first, the
    problems grouped by kind with their per-bin details folded, and how much longer to count."""
    fg, bg, word = LEVEL_STYLE.get(verdict.level, ("#333", "#f3f3f3", verdict.level.upper()))
    problems = verdict.problems()
    action = (f"<div class='speckle-verdict-action' style='font-size:14px;margin-top:4px'>"
              f"<b>Do first:</b> {html.escape(verdict.action)}</div>" if verdict.action else "")
    listed = "".join(_problem_html(p, with_action=i > 0) for i, p in enumerate(problems))
    listed = f"<div style='margin-top:6px'>{listed}</div>" if listed else ""
    return (f"<div style='border-left:10px solid {fg};background:{bg};padding:8px 14px;"
            f"margin:4px 0'><div><span style='font-size:22px;font-weight:bold;color:{fg};"
            f"letter-spacing:1px;margin-right:12px'>{word}</span>"
            f"<span class='speckle-verdict-conclusion' style='font-size:15px;font-weight:bold'>"
            f"{html.escape(verdict.conclusion)}</span></div>{action}{listed}"
            f"{forecast_html(verdict)}</div>")


def _pm(value, error, fmt="{:.3g}") -> str:
    if value is None or not np.isfinite(value):
        return "—"
    text = fmt.format(value)
    if error is not None and np.isfinite(error) and error > 0:
        text += f" ± {error:.2g}"
    return text


def fit_table_rows(result) -> list[dict]:
    """One dict of display strings per dynamic bin: label, q, τ, β, baseline, χ², verdict."""
    summary = fit_summary(result)
    part = result.partition
    levels = [b.level for b in result.verdict.bins] if result.verdict is not None else []
    fits = list(result.fits or [])
    rows = []
    for i in range(part.n_dynamic):
        q = part.dynamic_q[i]
        fit = fits[i] if i < len(fits) else None
        ok = summary["success"][i]

        def col(name, i=i):
            values = summary["values"].get(name)
            errors = summary["errors"].get(name)
            if values is None:
                return None, None
            return float(values[i]), float(errors[i])

        tau, tau_err = col("tau")
        beta, beta_err = col("contrast")
        base, base_err = col("baseline")
        rows.append({
            "bin": str(i + 1),
            "region": part.labels[i],
            "q (1/Å)": "—" if not np.isfinite(q) else f"{q * 1e-10:.5f}",
            "tau": _pm(tau, tau_err) if ok else "—",
            "beta": _pm(beta, beta_err) if ok else "—",
            "baseline": _pm(base, base_err, "{:.4f}") if ok else "—",
            "chi2": "—" if not ok or not np.isfinite(summary["chi2"][i])
                    else f"{summary['chi2'][i]:.3g}",
            "verdict": levels[i] if i < len(levels) else "",
            "fit": "no data" if fit is None else str(getattr(fit, "message", "")),
        })
    return rows


def _table_html(result, rows) -> str:
    unit = "s" if result.metadata.frame_time is not None else "frames"
    heads = ["bin", "region", "q (1/Å)", f"τ ({unit})", "β (contrast)", "baseline", "χ²ᵣ",
             "verdict", "fit"]
    keys = ["bin", "region", "q (1/Å)", "tau", "beta", "baseline", "chi2", "verdict", "fit"]
    th = "".join(f"<th style='text-align:left;padding:3px 8px;border-bottom:1px solid #999;"
                 f"white-space:nowrap'>"
                 f"{html.escape(h)}</th>" for h in heads)
    body = []
    for row in rows:
        cells = []
        for key in keys:
            text = html.escape(row[key])
            style = "padding:2px 8px;vertical-align:top"
            if key == "verdict" and row[key] in LEVEL_STYLE:
                text = f"<b style='color:{LEVEL_STYLE[row[key]][0]}'>{text}</b>"
            elif key == "fit":
                style += ";max-width:300px;font-size:12px;color:#555"
            else:
                style += ";white-space:nowrap"
            cells.append(f"<td style='{style}'>{text}</td>")
        body.append(f"<tr class='speckle-fit-row'>{''.join(cells)}</tr>")
    relax = ""
    rel = getattr(result, "relaxation", None)
    if rel is not None and rel.success:
        relax = (f"<div style='margin-top:6px'>Relaxation rate Γ = 1/τ ∝ qⁿ over the fitted "
                 f"rings: n = {_pm(rel.exponent, rel.exponent_err)} "
                 f"({html.escape(rel.regime)}).</div>")
    return (f"<table style='border-collapse:collapse;font-size:13px'><thead><tr>{th}</tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table>{relax}")


class ResultsView(widgets.VBox):
    """The verdict, plots, τ/β table and download links of one analysis.

    Parameters
    ----------
    base_url : str, optional
        The user server's base URL, for download links.
    server_root : path-like, optional
        The Jupyter server's root folder (default ``SPECKLE_SERVER_ROOT`` or home).

    Attributes
    ----------
    level : str
        The verdict level shown ("" before any result).
    rows : list of dict
        The fit table as display strings (see :func:`fit_table_rows`).
    files : ResultFiles or None
        The downloadable files of the shown result.
    on_exclude : callable or None
        ``on_exclude(frames)`` is called by the "exclude these frames and analyse again" button,
        shown when the verdict names frames to leave out (the dashboard sets it).

    Notes
    -----
    CSS classes: ``speckle-results``, ``speckle-verdict`` (plus ``speckle-verdict-good``,
    ``-marginal`` or ``-bad``; inside: ``speckle-verdict-conclusion``,
    ``speckle-verdict-action``, ``details.speckle-problem``, ``details.speckle-forecast`` with
    rows ``tr.speckle-forecast-row``), ``speckle-exclude-again`` (the button), ``speckle-g2-plot``, ``speckle-fit-table`` (rows
    ``tr.speckle-fit-row``), ``speckle-intensity-plot``, ``speckle-twotime-bin``,
    ``speckle-twotime-plot``, ``speckle-download`` (links ``a.speckle-download-link``).
    """

    def __init__(self, base_url: str | None = None, server_root=None, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-results")
        self.base_url = base_url or default_base_url()
        self.server_root = server_root
        self.result = None
        self.level = ""
        self.rows: list[dict] = []
        self.files: ResultFiles | None = None
        self._twotime_png: dict[int, bytes] = {}
        self.verdict = styled(widgets.HTML(), "speckle-verdict")
        self.on_exclude = None
        self._to_exclude: list[int] = []
        self.exclude_button = styled(widgets.Button(
            icon="filter", button_style="warning", layout=widgets.Layout(width="auto")),
            "speckle-exclude-again")
        self.exclude_button.on_click(self._exclude)
        self.g2_plot = styled(widgets.Image(format="png", layout=widgets.Layout(
            width="560px", max_width="100%")), "speckle-g2-plot")
        self.fit_table = styled(widgets.HTML(), "speckle-fit-table")
        self.intensity_plot = styled(widgets.Image(format="png", layout=widgets.Layout(
            width="560px", max_width="100%")), "speckle-intensity-plot")
        self.twotime_bin = styled(widgets.Dropdown(options=[], description="two-time of",
                                                   layout=widgets.Layout(width="340px")),
                                  "speckle-twotime-bin")
        self.twotime_plot = styled(widgets.Image(format="png", layout=widgets.Layout(
            width="460px", max_width="100%")), "speckle-twotime-plot")
        self.downloads = styled(widgets.HTML(), "speckle-download")
        self.message = MessageBox()
        self._body = widgets.VBox([
            widgets.HBox([self.g2_plot, self.fit_table],
                         layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start")),
            widgets.HBox([self.intensity_plot,
                          widgets.VBox([self.twotime_bin, self.twotime_plot])],
                         layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start")),
            self.downloads,
        ])
        self.children = [self.verdict, self.exclude_button, self.message, self._body]
        self.twotime_bin.observe(self._on_bin, "value")
        self.clear()

    def clear(self, note: str | None = None) -> None:
        """Show nothing (no dataset analysed yet, or the analysis was stopped).

        Parameters
        ----------
        note : str, optional
            Plain text in place of the verdict (default: how to get one).
        """
        self.result, self.level, self.rows, self.files = None, "", [], None
        self._twotime_png = {}
        for level in LEVEL_STYLE:
            self.verdict.remove_class(f"speckle-verdict-{level}")
        text = (html.escape(note) if note else
                "Choose data and regions, then press <b>Analyze</b>: the verdict appears here.")
        self.verdict.value = f"<div style='color:#555;padding:8px 0'>{text}</div>"
        self._offer_exclusion([])
        self.message.clear()
        self.downloads.value = ""
        self._body.layout.display = "none"

    def show(self, result) -> dict:
        """Show a result; return the rendered PNG files (``{"g2.png": bytes, ...}``).

        Safe to call from the analysis thread.
        """
        self.result = result
        self.files = None
        self._twotime_png = {}
        verdict = result.verdict
        self.level = verdict.level if verdict is not None else ""
        g2_png = render_png(plots.plot_g2(result))
        self.g2_plot.value = g2_png
        self.rows = fit_table_rows(result)
        self.fit_table.value = _table_html(result, self.rows)
        for level in LEVEL_STYLE:
            self.verdict.remove_class(f"speckle-verdict-{level}")
        if verdict is not None:
            self.verdict.add_class(f"speckle-verdict-{verdict.level}")
            self.verdict.value = verdict_html(verdict)
        self._offer_exclusion(verdict.exclude_frames if verdict is not None else [])
        self.downloads.value = note_html("Writing the result files…")
        self._body.layout.display = None
        intensity_png = render_png(plots.plot_intensity(result))
        self.intensity_plot.value = intensity_png
        labels = result.partition.labels
        keys = sorted(int(k) for k in (result.twotime or {}))
        self.twotime_bin.unobserve(self._on_bin, "value")
        self.twotime_bin.options = [(labels[k - 1] if k - 1 < len(labels) else f"bin {k}", k)
                                    for k in keys]
        self.twotime_bin.value = keys[0] if keys else None
        self.twotime_bin.observe(self._on_bin, "value")
        self.twotime_bin.layout.display = None if keys else "none"
        self._show_twotime()
        pngs = {"g2.png": g2_png, "intensity.png": intensity_png}
        pngs.update({twotime_png_name(k): v for k, v in self._twotime_png.items()})
        return pngs

    def _offer_exclusion(self, frames) -> None:
        self._to_exclude = list(frames)
        self.exclude_button.description = (
            f"Exclude frame{'s' if len(frames) > 1 else ''} {format_frames(frames)} and analyse "
            "again" if frames else "")
        self.exclude_button.layout.display = None if frames else "none"

    def _exclude(self, _button) -> None:
        if self.on_exclude is not None and self._to_exclude:
            self.on_exclude(list(self._to_exclude))

    def _on_bin(self, _change) -> None:
        try:
            self._show_twotime()
            if self.files is not None:
                self.show_files(self.files)
        except Exception as exc:  # noqa: BLE001 - shown in the page
            self.message.error(exc, title="Cannot show this two-time map:")

    def _show_twotime(self) -> None:
        result, key = self.result, self.twotime_bin.value
        if result is None or key is None:
            self.twotime_plot.value = b""
            self.twotime_plot.layout.display = "none"
            return
        png = self._twotime_png.get(key)
        if png is None:
            png = self._twotime_png[key] = render_png(plots.plot_twotime(result, key))
        self.twotime_plot.value = png
        self.twotime_plot.layout.display = None
        files = self.files
        if files is not None and key not in files.twotime:
            save_twotime_png(files, key, png)

    def show_files(self, files: ResultFiles) -> None:
        """Offer the exported files as download links (and say where they are)."""
        self.files = files
        f = files.files
        entries = [
            (f["hdf5"], "Result, HDF5 (opens in pyXpcsViewer)"),
            (f["g2_csv"], "g2 table, CSV"),
            (f["fits_csv"], "fit table, CSV"),
            (f["csv_zip"], "both tables, ZIP"),
            (f["g2_png"], "g2 plot, PNG"),
            (f["intensity_png"], "intensity plot, PNG"),
            (f["image_png"], "mean image with regions, PNG"),
        ]
        labels = self.result.partition.labels if self.result is not None else []
        for key, path in sorted(files.twotime.items()):
            label = labels[key - 1] if key - 1 < len(labels) else f"bin {key}"
            entries.append((path, f"two-time map of {label}, PNG"))
        self.downloads.value = links_html(entries, files.folder, self.base_url,
                                          self.server_root)

    def show_error(self, text: str) -> None:
        """Show a failure to write the files."""
        self.downloads.value = ""
        self.message.error(text, title="The result files were not written:")
