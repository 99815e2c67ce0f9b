/* plot.h: a small SVG line-plot writer for the examples (no dependencies beyond libc).
 *
 *     plot_chart c;
 *     plot_init(&c, "loss", "step", "loss");
 *     plot_add(&c, "train", steps, losses, n, 0);          (x, y: n doubles each)
 *     plot_add(&c, "val", val_steps, val_losses, m, 1);    (1: a marker at each point)
 *     if (plot_write(&c, "loss.svg") != 0) perror("loss.svg");
 *
 * Draws a frame with "nice" ticks (1, 2 or 5 times a power of ten) and their labels on
 * both axes, the axis labels, the title, each series as a polyline in its own colour,
 * and a legend. Points that are NaN or infinite are left out. The arrays are only read
 * during plot_write. Everything is static: include it where it is used. */
#ifndef PLOT_H
#define PLOT_H
#include <math.h>
#include <stdio.h>
#include <string.h>

#define PLOT_MAX_SERIES 8
typedef struct {
    const char *name;
    const double *x, *y;   /* (n) */
    int n;
    int markers;           /* draw a dot at each point (for sparse series) */
} plot_series;
typedef struct {
    const char *title, *xlabel, *ylabel;
    int width, height;     /* pixels (720 x 440 by default) */
    plot_series s[PLOT_MAX_SERIES];
    int ns;
} plot_chart;

static void plot_init(plot_chart *c, const char *title, const char *xlabel, const char *ylabel) {
    memset(c, 0, sizeof *c);
    c->title = title; c->xlabel = xlabel; c->ylabel = ylabel;
    c->width = 720; c->height = 440;
}
/* Returns 0, or -1 when PLOT_MAX_SERIES are there already. */
static int plot_add(plot_chart *c, const char *name, const double *x, const double *y, int n, int markers) {
    if (c->ns >= PLOT_MAX_SERIES) return -1;
    plot_series *s = &c->s[c->ns++];
    s->name = name; s->x = x; s->y = y; s->n = n; s->markers = markers;
    return 0;
}

/* A tick step of 1, 2 or 5 x 10^k giving about `want` ticks over span. */
static double plot__step(double span, int want) {
    double raw = span / want, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}
/* A tick label: as few digits as the step needs. */
static void plot__label(char *buf, size_t cap, double v, double step) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) < step * 1e-6) v = 0;
    if (fabs(v) >= 1e6 || (v != 0 && fabs(v) < 1e-4)) snprintf(buf, cap, "%.2g", v);
    else snprintf(buf, cap, "%.*f", dec > 6 ? 6 : dec, v);
}
/* Text with &, < and > escaped. */
static void plot__text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '&') fputs("&amp;", f);
        else if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else fputc(*s, f);
    }
}

/* Write the chart to path. Returns 0, or -1 (errno set) when the file cannot be written. */
static int plot_write(const plot_chart *c, const char *path) {
    static const char *const colour[PLOT_MAX_SERIES] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                        "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < c->ns; k++)
        for (int i = 0; i < c->s[k].n; i++) {
            double x = c->s[k].x[i], y = c->s[k].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            if (x < x0) x0 = x;
            if (x > x1) x1 = x;
            if (y < y0) y0 = y;
            if (y > y1) y1 = y;
        }
    if (x0 > x1) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }    /* no points: an empty frame */
    if (x1 - x0 < 1e-12) { x0 -= 0.5; x1 += 0.5; }
    if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
    double pad = 0.04 * (y1 - y0);
    y0 -= pad; y1 += pad;
    double xs = plot__step(x1 - x0, 8), ys = plot__step(y1 - y0, 6);
    /* plot area in pixels: margins for the labels, the legend at the top right inside */
    int W = c->width, H = c->height, L = 70, R = W - 20, T = 40, B = H - 55;
    FILE *f = fopen(path, "w");
    if (!f) return -1;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * (R - L))
#define PY(y) (B - ((y) - y0) / (y1 - y0) * (B - T))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", (L + R) / 2);
    plot__text(f, c->title);
    fprintf(f, "</text>\n");
    /* grid, ticks and their labels */
    char lab[64];
    for (double v = ceil(x0 / xs) * xs; v <= x1 + xs * 1e-9; v += xs) {
        double px = PX(v);
        plot__label(lab, sizeof lab, v, xs);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e5e5e5\"/>\n", px, T, px, B);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\"/>\n", px, B, px, B + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", px, B + 18, lab);
    }
    for (double v = ceil(y0 / ys) * ys; v <= y1 + ys * 1e-9; v += ys) {
        double py = PY(v);
        plot__label(lab, sizeof lab, v, ys);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", L, py, R, py);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\"/>\n", L - 5, py, L, py);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 8, py + 4, lab);
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", L, T, R - L, B - T);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (L + R) / 2, H - 15);
    plot__text(f, c->xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(18 %d) rotate(-90)\" text-anchor=\"middle\">", (T + B) / 2);
    plot__text(f, c->ylabel);
    fprintf(f, "</text>\n");
    /* the series */
    for (int k = 0; k < c->ns; k++) {
        const plot_series *s = &c->s[k];
        int open = 0;
        for (int i = 0; i < s->n; i++) {        /* a polyline, broken where a point is missing */
            if (!isfinite(s->x[i]) || !isfinite(s->y[i])) {
                if (open) fprintf(f, "\"/>\n");
                open = 0;
                continue;
            }
            if (!open) fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colour[k]);
            fprintf(f, "%s%.1f,%.1f", open ? " " : "", PX(s->x[i]), PY(s->y[i]));
            open = 1;
        }
        if (open) fprintf(f, "\"/>\n");
        for (int i = 0; s->markers && i < s->n; i++)
            if (isfinite(s->x[i]) && isfinite(s->y[i]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(s->x[i]), PY(s->y[i]), colour[k]);
    }
    /* the legend, top right inside the frame */
    for (int k = 0; k < c->ns; k++) {
        int y = T + 16 + 18 * k;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2.5\"/>\n", R - 120, y - 4, R - 96, y - 4, colour[k]);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", R - 90, y);
        plot__text(f, c->s[k].name);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
    int bad = ferror(f);
    return fclose(f) == 0 && !bad ? 0 : -1;
}
#endif
