/* test_plot: examples/plot.h (the SVG line plot) and train_gpt2's --log / --plot.
 *   - tick steps are 1, 2 or 5 times a power of ten (checked by hand), their labels
 *     carry the digits the step needs;
 *   - the SVG has one polyline per series with every point, broken at a NaN, a dot per
 *     point of a series with markers, the legend names, the axis labels, escaped text;
 *   - an unwritable path gives -1;
 *   - build/train_gpt2 --log --plot on a tiny model: one JSON line per step and per
 *     validation with the documented keys, and the SVG with both curves. */
#define _POSIX_C_SOURCE 200809L   /* popen */
#include "test.h"
#include "examples/plot.h"

static int count(const char *s, const char *what) {
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what)) n++;
    return n;
}

static void test_ticks(void) {
    CHECK(plot__step(800, 8) == 100, "800 over 8 ticks: step 100");
    CHECK(fabs(plot__step(4.9, 6) - 1) < 1e-12, "4.9 over 6: step 1");
    CHECK(fabs(plot__step(2.2, 6) - 0.5) < 1e-12, "2.2 over 6: step 0.5");
    CHECK(fabs(plot__step(0.03, 6) - 0.005) < 1e-12, "0.03 over 6: step 0.005");
    CHECK(fabs(plot__step(1300, 8) - 200) < 1e-9, "1300 over 8: step 200");
    char b[64];
    plot__label(b, sizeof b, 4.5, 0.5); CHECK(!strcmp(b, "4.5"), "label 4.5 at step 0.5: %s", b);
    plot__label(b, sizeof b, 300, 100); CHECK(!strcmp(b, "300"), "label 300 at step 100: %s", b);
    plot__label(b, sizeof b, 0.005, 0.005); CHECK(!strcmp(b, "0.005"), "label 0.005: %s", b);
    plot__label(b, sizeof b, 1e-17, 0.5); CHECK(!strcmp(b, "0.0"), "label of a rounding error near 0: %s", b);
}

static void test_svg(void) {
    double x[50], y[50], vx[3] = {0, 20, 49}, vy[3] = {5, 4, 3.5};
    for (int i = 0; i < 50; i++) { x[i] = i; y[i] = 5 - 0.03 * i; }
    const char *path = "/tmp/llm_test_plot.svg";
    plot_chart c;
    plot_init(&c, "a <title> & more", "step", "loss");
    CHECK(plot_add(&c, "train", x, y, 50, 0) == 0 && plot_add(&c, "val", vx, vy, 3, 1) == 0, "two series");
    CHECK(plot_write(&c, path) == 0, "write %s", path);
    size_t n;
    char *svg = test_read_file(path, &n);
    CHECK(svg && strncmp(svg, "<svg ", 5) == 0 && strstr(svg, "</svg>\n"), "an SVG document");
    if (svg) {
        CHECK(count(svg, "<polyline") == 2, "one polyline per series");
        const char *p = strstr(svg, "points=\"");
        int pts = 0;
        for (p = p ? p + 8 : NULL; p && *p != '"'; p++) pts += *p == ',';
        CHECK(pts == 50, "the first polyline has the 50 points (%d)", pts);
        CHECK(count(svg, "<circle") == 3, "a dot per point of the marked series");
        CHECK(strstr(svg, ">train</text>") && strstr(svg, ">val</text>"), "legend names");
        CHECK(strstr(svg, ">step</text>") && strstr(svg, ">loss</text>"), "axis labels");
        CHECK(strstr(svg, "a &lt;title&gt; &amp; more"), "text escaped");
        CHECK(strstr(svg, ">40</text>") && strstr(svg, ">4.0</text>"), "tick labels on both axes");
    }
    free(svg);
    /* a NaN breaks the line; an infinite point is left out */
    y[10] = NAN; y[30] = INFINITY;
    plot_init(&c, "t", "x", "y");
    plot_add(&c, "s", x, y, 50, 0);
    CHECK(plot_write(&c, path) == 0, "write with NaN");
    svg = test_read_file(path, &n);
    CHECK(svg && count(svg, "<polyline") == 3 && !strstr(svg, "nan") && !strstr(svg, "inf"), "NaN and inf split the line in 3");
    free(svg);
    plot_init(&c, "empty", "x", "y");
    CHECK(plot_write(&c, path) == 0, "an empty chart is written");
    remove(path);
    CHECK(plot_write(&c, "/nonexistent-dir/x.svg") == -1, "unwritable path: -1");
    for (int k = 0; k < PLOT_MAX_SERIES; k++) plot_add(&c, "s", x, y, 1, 0);
    CHECK(plot_add(&c, "one too many", x, y, 1, 0) == -1, "at most PLOT_MAX_SERIES series");
}

/* ---- train_gpt2 --log --plot ------------------------------------------------------------ */
static void test_train_log(void) {
    const char *bd = getenv("LLM_BUILD");
    char exe[512], cmd[2048];
    snprintf(exe, sizeof exe, "%s/train_gpt2", bd && *bd ? bd : "build");
    if (!test_file_exists(exe)) { TEST_SKIP("--log/--plot: no %s (make builds it)", exe); return; }
    /* an llm.c token file: 256 x int32 header (20240520, 1, count), uint16 ids */
    const char *data = "/tmp/llm_test_plot_tokens.bin", *log = "/tmp/llm_test_plot.jsonl", *svg = "/tmp/llm_test_plot2.svg";
    FILE *f = fopen(data, "wb");
    int hdr[256] = {20240520, 1, 4000};
    unsigned short ids[4000];
    for (int i = 0; i < 4000; i++) ids[i] = (unsigned short)((i * 7 + i / 13) % 64);
    CHECK(f && fwrite(hdr, sizeof hdr, 1, f) == 1 && fwrite(ids, sizeof ids, 1, f) == 1, "write %s", data);
    if (f) fclose(f);
    snprintf(cmd, sizeof cmd, "%s -d %s --arch llama --layers 1 --heads 2 --embd 16 --vocab 64 --ctx 16 -b 2 -t 16 -s 6 "
             "--eval-every 3 --eval-batches 2 --threads 1 --log %s --plot %s > /dev/null 2>&1", exe, data, log, svg);
    CHECK(system(cmd) == 0, "%s", cmd);
    size_t n;
    char *txt = test_read_file(log, &n);
    CHECK(txt != NULL, "the log exists");
    if (txt) {
        /* 6 steps, validations at 0, 3, 6 */
        CHECK(count(txt, "\n") == 9, "9 lines: 6 steps and 3 validations (%d)", count(txt, "\n"));
        CHECK(count(txt, "\"loss\":") == 6 && count(txt, "\"val_loss\":") == 3, "step and validation lines");
        CHECK(count(txt, "\"lr\":") == 6 && count(txt, "\"norm\":") == 6 && count(txt, "\"ms\":") == 9 && count(txt, "\"tok_s\":") == 6,
              "every key");
        CHECK(strstr(txt, "{\"step\":1,\"loss\":") && strstr(txt, "{\"step\":6,\"val_loss\":"), "steps counted from 1");
    }
    free(txt);
    txt = test_read_file(svg, &n);
    CHECK(txt && count(txt, "<polyline") == 2 && count(txt, "<circle") == 3, "the SVG has both curves");
    free(txt);
    remove(data); remove(log); remove(svg);
}

int main(void) {
    test_ticks();
    test_svg();
    test_train_log();
    return TEST_END("test_plot");
}
