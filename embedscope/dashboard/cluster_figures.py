"""Pure figure builders for clustering views: the within-image patch overlay, the dendrogram
of an agglomerative run and the k-means / k-medoids teaching animation."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from embedscope.dashboard.figures import PALETTE, cluster_colour


def _rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def patch_overlay(crop: np.ndarray, labels: np.ndarray, patch: int, alpha: float = 0.5) -> np.ndarray:
    """The crop with each patch tinted by its cluster's colour (uint8 HxWx3)."""
    g = labels.shape[0]
    tint = np.zeros((g * patch, g * patch, 3), np.float32)
    for lab in np.unique(labels):
        tint[np.kron(labels == lab, np.ones((patch, patch), bool))] = _rgb(PALETTE[int(lab) % len(PALETTE)])
    base = crop[: g * patch, : g * patch].astype(np.float32)
    return np.clip(base * (1 - alpha) + tint * alpha, 0, 255).astype(np.uint8)


def patch_overlay_figure(crop: np.ndarray, labels: np.ndarray, patch: int) -> go.Figure:
    """Side by side: what the model saw, and its patches coloured by cluster."""
    from plotly.subplots import make_subplots

    fig = make_subplots(1, 2, subplot_titles=("model input", f"{len(np.unique(labels))} patch clusters"),
                        horizontal_spacing=0.03)
    fig.add_trace(go.Image(z=crop), 1, 1)
    fig.add_trace(go.Image(z=patch_overlay(crop, labels, patch)), 1, 2)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=460, margin={"l": 10, "r": 10, "t": 40, "b": 10}, template="plotly_white")
    return fig


# -- dendrogram and the k-means / k-medoids teaching animation ------------------------------


def dendrogram_figure(linkage: Any, labels: Sequence[int], *, names: Sequence[str] | None = None,
                      method: str = "ward", total: int | None = None) -> go.Figure:
    """The dendrogram of a stored scipy ``linkage`` (n-1 × 4) over ``n`` sampled images.

    One ⊓ per merge, drawn as line segments; a link is in a cluster's colour when every leaf
    under it carries that stored ``labels`` value, grey when it joins clusters. The leaves are
    markers coloured by their stored cluster (one trace per cluster, so the legend filters);
    ``names`` (e.g. sha256 or file names) go to the leaves' hover text; ``total``: how many
    images the run clustered (the title says whether the leaves are a sample of them).
    """
    from scipy.cluster.hierarchy import dendrogram

    Z = np.asarray(linkage, np.float64)
    labs = np.asarray(labels, np.int64)
    n = len(labs)
    if n < 2 or Z.shape != (n - 1, 4):
        raise ValueError(f"a linkage over {n} leaves needs shape ({n - 1}, 4), got {Z.shape}")
    # the cluster label shared by every leaf under each node (None when mixed)
    node_label: list[int | None] = [int(x) for x in labs] + [None] * (n - 1)
    for i, (a, b) in enumerate(Z[:, :2].astype(int)):
        node_label[n + i] = node_label[a] if node_label[a] == node_label[b] else None
    d = dendrogram(Z, no_plot=True, link_color_func=lambda node: str(node))
    by_colour: dict[str, tuple[list, list]] = {}
    for xs, ys, node in zip(d["icoord"], d["dcoord"], d["color_list"]):
        lab = node_label[int(node)]
        colour = "#888888" if lab is None else cluster_colour(lab)
        seg = by_colour.setdefault(colour, ([], []))
        seg[0].extend([*xs, None])
        seg[1].extend([*ys, None])
    fig = go.Figure()
    for colour, (xs, ys) in by_colour.items():
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour, "width": 1.2}, hoverinfo="skip",
                                 showlegend=False, name="merges"))
    leaves = np.asarray(d["leaves"], np.int64)
    leaf_x = 5.0 + 10.0 * np.arange(n)
    leaf_lab = labs[leaves]
    for lab in sorted(set(leaf_lab.tolist())):
        mask = leaf_lab == lab
        text = [f"{names[i]} · cluster {lab}" if names is not None else f"cluster {lab}" for i in leaves[mask]]
        fig.add_trace(go.Scatter(x=leaf_x[mask], y=np.zeros(int(mask.sum())), mode="markers", name=f"cluster {lab} ({int(mask.sum())})",
                                 marker={"color": cluster_colour(lab), "size": 7, "symbol": "square"},
                                 hovertext=text, hoverinfo="text"))
    of = f"a sample of {n} of {total:,} images" if total and total > n else f"{n} images"
    fig.update_layout(title=f"agglomerative ({method}) dendrogram of {of} (leaves: stored cluster)",
                      height=360, template="plotly_white", margin={"l": 50, "r": 10, "t": 40, "b": 20},
                      legend={"title": {"text": "cluster"}}, yaxis_title="merge distance")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    return fig


def iterations_figure(xy: np.ndarray, it: Any, *, title: str = "", names: Sequence[str] | None = None) -> go.Figure:
    """An animation of ``it`` (:class:`embedscope.analysis.iterations.Iterations`) on 2-D
    points ``xy``: one frame per iteration, points coloured by their assignment, the centres
    (centroids or medoids) as large crosses with their trails so far, and play / pause
    buttons plus a slider. Every frame has the same traces: points, centres, one trail per
    centre."""
    xy = np.asarray(xy, np.float64)
    k = len(it.centers[0])
    colours = np.asarray([cluster_colour(c) for c in range(k)], dtype=object)
    what = "medoid" if it.method == "kmedoids" else "centroid"
    cost_name = "sum of distances" if it.method == "kmedoids" else "inertia"
    hover = list(names) if names is not None else None

    def traces(i: int) -> list[Any]:
        out = [go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name="points",
                          marker={"color": colours[it.labels[i]].tolist(), "size": 6, "opacity": 0.75},
                          hovertext=hover, hoverinfo="text" if hover else "skip", showlegend=False),
               go.Scatter(x=it.centers[i][:, 0], y=it.centers[i][:, 1], mode="markers", name=f"{what}s",
                          marker={"color": colours.tolist(), "size": 20, "symbol": "x",
                                  "line": {"color": "black", "width": 1.5}}, showlegend=False,
                          hovertext=[f"{what} {c}" for c in range(k)], hoverinfo="text")]
        for c in range(k):
            path = np.asarray([it.centers[j][c] for j in range(i + 1)])
            out.append(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers", name=f"trail {c}", showlegend=False,
                                  line={"color": colours[c], "width": 2, "dash": "dot"}, marker={"size": 5, "color": colours[c]},
                                  hoverinfo="skip"))
        return out

    def caption(i: int) -> str:
        return f"{title} · iteration {i}/{it.n_frames - 1} · {cost_name} {it.cost[i]:.4g}"

    names_f = [str(i) for i in range(it.n_frames)]
    frames = [go.Frame(data=traces(i), name=names_f[i], layout={"title": {"text": caption(i)}}) for i in range(it.n_frames)]
    fig = go.Figure(data=traces(0), frames=frames)
    play = {"frame": {"duration": 700, "redraw": True}, "fromcurrent": True, "transition": {"duration": 250}}
    pause = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    pad = 0.05 * (np.ptp(xy, axis=0) + 1e-9)
    lo, hi = xy.min(0) - pad, xy.max(0) + pad
    fig.update_layout(
        title={"text": caption(0)}, height=560, template="plotly_white", margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={"range": [lo[0], hi[0]], "showticklabels": False, "autorange": False},
        yaxis={"range": [lo[1], hi[1]], "showticklabels": False, "autorange": False},
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": -0.02, "xanchor": "left", "yanchor": "top",
                      "pad": {"t": 30}, "showactive": False,
                      "buttons": [{"label": "▶ play", "method": "animate", "args": [None, play]},
                                  {"label": "❚❚ pause", "method": "animate", "args": [[None], pause]}]}],
        sliders=[{"active": 0, "x": 0.16, "len": 0.84, "y": -0.02, "yanchor": "top", "pad": {"t": 20},
                  "currentvalue": {"prefix": "iteration "},
                  "steps": [{"label": names_f[i], "method": "animate",
                             "args": [[names_f[i]], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate",
                                                     "transition": {"duration": 0}}]} for i in range(it.n_frames)]}],
    )
    return fig
