// The C example (examples/quantize_and_run.c) in Go: same arguments, same output.
//
//	go run ./cmd/quantize_and_run MODEL.safetensors CALIB.bin TEST.bin [IMAGES [OUT.repq]]
package main

import (
	"fmt"
	"os"
	"strconv"

	"repq"
)

const batch = 16

// countCorrect is top-1 over images in batches of at most batch, the last one shorter.
func countCorrect(ctx *repq.Context, images, labels *repq.Tensor, classes int64,
	run func(x, logits *repq.Tensor) error) (int64, error) {
	shape, err := labels.Shape()
	if err != nil {
		return 0, err
	}
	n, correct := shape[0], int64(0)
	for begin := int64(0); begin < n; begin += batch {
		end := begin + batch
		if end > n {
			end = n
		}
		hits, err := func() (int64, error) {
			x, err := images.Rows(ctx, begin, end)
			if err != nil {
				return 0, err
			}
			defer x.Close()
			y, err := labels.Rows(ctx, begin, end)
			if err != nil {
				return 0, err
			}
			defer y.Close()
			logits, err := repq.ZerosF32(ctx, end-begin, classes)
			if err != nil {
				return 0, err
			}
			defer logits.Close()
			if err := run(x, logits); err != nil {
				return 0, err
			}
			return repq.Top1Count(logits, y)
		}()
		if err != nil {
			return 0, err
		}
		correct += hits
	}
	return correct, nil
}

func printTop1(what string, correct, n int64) {
	fmt.Printf("%s top-1: %.2f%% (%d/%d)\n", what, 100*float64(correct)/float64(n), correct, n)
}

func run(args []string) error {
	limit := int64(100)
	if len(args) > 4 {
		if v, err := strconv.ParseInt(args[4], 10, 64); err == nil {
			limit = v
		}
	}
	outPath := "w4a4.repq"
	if len(args) > 5 {
		outPath = args[5]
	}
	ctx, err := repq.NewContext()
	if err != nil {
		return err
	}
	defer ctx.Close()
	model, err := repq.LoadModel(ctx, args[1])
	if err != nil {
		return err
	}
	defer model.Close()
	calibImages, calibLabels, err := repq.CifarLoad(ctx, args[2], 0, 32)
	if err != nil {
		return err
	}
	defer calibImages.Close()
	defer calibLabels.Close()
	test, labels, err := repq.CifarLoad(ctx, args[3], 0, limit)
	if err != nil {
		return err
	}
	defer test.Close()
	defer labels.Close()

	opts, err := repq.NewOptions()
	if err != nil {
		return err
	}
	defer opts.Close()
	if err := opts.Set(repq.OptWeightBits, 4); err != nil {
		return err
	}
	if err := opts.Set(repq.OptActBits, 4); err != nil {
		return err
	}
	calibrator, err := repq.NewCalibrator(ctx, model, opts)
	if err != nil {
		return err
	}
	defer calibrator.Close()
	if err := calibrator.Feed(calibImages); err != nil {
		return err
	}
	channelwise, err := calibrator.Finish()
	if err != nil {
		return err
	}
	defer channelwise.Close()
	qmodel, err := channelwise.Reparameterize(ctx)
	if err != nil {
		return err
	}
	defer qmodel.Close()
	reconstructed, err := calibrator.Reconstruct(qmodel)
	if err != nil {
		return err
	}
	defer reconstructed.Close()
	if err := reconstructed.Save(outPath); err != nil {
		return err
	}
	loaded, err := repq.LoadQModel(ctx, outPath)
	if err != nil {
		return err
	}
	defer loaded.Close()
	session, err := repq.NewSession(ctx, loaded, batch)
	if err != nil {
		return err
	}
	defer session.Close()

	shape, err := labels.Shape()
	if err != nil {
		return err
	}
	n := shape[0]
	classes, err := loaded.NumClasses()
	if err != nil {
		return err
	}
	fp32, err := countCorrect(ctx, test, labels, classes, model.Forward)
	if err != nil {
		return err
	}
	fake, err := countCorrect(ctx, test, labels, classes, loaded.ForwardFakeQuant)
	if err != nil {
		return err
	}
	integer, err := countCorrect(ctx, test, labels, classes, session.Run)
	if err != nil {
		return err
	}
	fmt.Printf("librepq %s (Go): %d images, W4A4 saved to %s\n", repq.Version(), n, outPath)
	printTop1("fp32", fp32, n)
	printTop1("fake-quant", fake, n)
	printTop1("integer", integer, n)
	return nil
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintf(os.Stderr, "usage: %s MODEL.safetensors CALIB.bin TEST.bin [IMAGES [OUT.repq]]\n", os.Args[0])
		os.Exit(2)
	}
	if err := run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}
