//! The C example (examples/quantize_and_run.c) in Rust: same arguments, same output.
//!
//!   cargo run --offline --release -- MODEL.safetensors CALIB.bin TEST.bin [IMAGES [OUT.repq]]
use std::env;
use std::process;

use repq::{sys, Calibrator, Context, Model, Options, QModel, Result, Session, Tensor};

const BATCH: i64 = 16;

/// Top-1 over `images` in batches of at most BATCH, the last one shorter.
fn count_correct<F>(ctx: &Context, images: &Tensor, labels: &Tensor, classes: i64, mut run: F) -> Result<i64>
where
    F: FnMut(&Tensor, &mut Tensor) -> Result<()>,
{
    let n = labels.shape()?[0];
    let mut correct = 0;
    let mut begin = 0;
    while begin < n {
        let end = (begin + BATCH).min(n);
        let x = images.rows(ctx, begin, end)?;
        let y = labels.rows(ctx, begin, end)?;
        let mut logits = Tensor::zeros_f32(ctx, &[end - begin, classes])?;
        run(&x, &mut logits)?;
        correct += repq::top1_count(&logits, &y)?;
        begin = end;
    }
    Ok(correct)
}

fn print_top1(what: &str, correct: i64, n: i64) {
    println!("{} top-1: {:.2}% ({}/{})", what, 100.0 * correct as f64 / n as f64, correct, n);
}

fn run(args: &[String]) -> Result<()> {
    let limit: i64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(100);
    let out_path = args.get(5).map(String::as_str).unwrap_or("w4a4.repq");
    let ctx = Context::new()?;
    let model = Model::load(&ctx, &args[1])?;
    let (calib_images, _calib_labels) = repq::cifar_load(&ctx, &args[2], 0, 32)?;
    let (test, labels) = repq::cifar_load(&ctx, &args[3], 0, limit)?;

    let mut options = Options::new()?;
    options.set(sys::REPQ_OPT_WEIGHT_BITS, 4)?.set(sys::REPQ_OPT_ACT_BITS, 4)?;
    let mut calibrator = Calibrator::new(&ctx, &model, &options)?;
    calibrator.feed(&calib_images)?;
    let reparameterized = calibrator.finish()?.reparameterize(&ctx)?;
    calibrator.reconstruct(&reparameterized)?.save(out_path)?;
    let loaded = QModel::load(&ctx, out_path)?;
    let mut session = Session::new(&ctx, &loaded, BATCH as i32)?;

    let n = labels.shape()?[0];
    let classes = loaded.num_classes()?;
    let fp32 = count_correct(&ctx, &test, &labels, classes, |x, l| model.forward(x, l))?;
    let fake = count_correct(&ctx, &test, &labels, classes, |x, l| loaded.forward_fake_quant(x, l))?;
    let integer = count_correct(&ctx, &test, &labels, classes, |x, l| session.run(x, l))?;
    println!("librepq {} (Rust): {} images, W4A4 saved to {}", repq::version(), n, out_path);
    print_top1("fp32", fp32, n);
    print_top1("fake-quant", fake, n);
    print_top1("integer", integer, n);
    Ok(())
}

fn main() {
    let args: Vec<String> = env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: {} MODEL.safetensors CALIB.bin TEST.bin [IMAGES [OUT.repq]]", args[0]);
        process::exit(2);
    }
    if let Err(e) = run(&args) {
        eprintln!("error: {}", e);
        process::exit(1);
    }
}
