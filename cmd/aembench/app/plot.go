package app

import (
	"fmt"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/aem-dev/aem/bench/scenario"
)

// writePlot draws two charts side by side: latency percentiles of the
// latency scenario per transport, and throughput against batch size.
func writePlot(file string, rows []scenario.Row) error {
	lat, err := latencyPlot(rows)
	if err != nil {
		return err
	}
	thr, err := throughputPlot(rows)
	if err != nil {
		return err
	}
	const w, h = 32 * vg.Centimeter, 12 * vg.Centimeter
	var canvas vg.CanvasWriterTo
	switch plotFormat(file) {
	case "svg":
		canvas = vgsvg.New(w, h)
	case "png":
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110))}
	default:
		return fmt.Errorf("%s: want a .svg or .png file", file)
	}
	dc := draw.New(canvas)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Centimeter, PadTop: vg.Millimeter * 3,
		PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	plots := [][]*plot.Plot{{lat, thr}}
	canvases := plot.Align(plots, tiles, dc)
	lat.Draw(canvases[0][0])
	thr.Draw(canvases[0][1])

	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	return f.Close()
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

func latencyPlot(rows []scenario.Row) (*plot.Plot, error) {
	p := newPlot("latency (rate-limited stream)", "percentile", "ns")
	p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 1, Label: "p50"}, {Value: 2, Label: "p99"},
		{Value: 3, Label: "p99.9"}, {Value: 4, Label: "max"}})
	i := 0
	for _, r := range rows {
		if scenario.Family(r.Scenario) != scenario.Latency || r.P50 == 0 {
			continue
		}
		pts := plotter.XYs{{X: 1, Y: float64(r.P50)}, {X: 2, Y: float64(r.P99)},
			{X: 3, Y: float64(r.P999)}, {X: 4, Y: float64(max(r.Max, 1))}}
		if err := addLine(p, r.Transport, pts, i); err != nil {
			return nil, err
		}
		i++
	}
	if i == 0 {
		p.Y.Scale, p.Y.Tick.Marker = plot.LinearScale{}, plot.DefaultTicks{}
	}
	return p, nil
}

func throughputPlot(rows []scenario.Row) (*plot.Plot, error) {
	p := newPlot("throughput against batch size", "batch (events)", "events/s")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	byTransport := map[string]plotter.XYs{}
	var order []string
	for _, r := range rows {
		if scenario.Family(r.Scenario) != scenario.Throughput || r.EventsPerSec <= 0 || r.Param <= 0 {
			continue
		}
		if _, ok := byTransport[r.Transport]; !ok {
			order = append(order, r.Transport)
		}
		byTransport[r.Transport] = append(byTransport[r.Transport], plotter.XY{X: float64(r.Param), Y: r.EventsPerSec})
	}
	for i, tr := range order {
		pts := byTransport[tr]
		slices.SortFunc(pts, func(a, b plotter.XY) int { return int(a.X - b.X) })
		if err := addLine(p, tr, pts, i); err != nil {
			return nil, err
		}
	}
	if len(order) == 0 {
		p.X.Scale, p.X.Tick.Marker = plot.LinearScale{}, plot.DefaultTicks{}
		p.Y.Scale, p.Y.Tick.Marker = plot.LinearScale{}, plot.DefaultTicks{}
	}
	return p, nil
}

func addLine(p *plot.Plot, name string, pts plotter.XYs, i int) error {
	l, s, err := plotter.NewLinePoints(pts)
	if err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	l.Color = plotutil.Color(i)
	s.Color = plotutil.Color(i)
	s.Shape = plotutil.Shape(i)
	if name == "aem" {
		l.Width = vg.Points(2.5)
	}
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}
