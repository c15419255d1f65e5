//! The MatryoshkaLoRA identities of METHOD.md, on every CPU backend in the build.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{Distribution, s};
use matryoshka_lora::{
    ActiveRank, AdaptedModule, AdapterError, AdapterMethod, BackendKind, MatryoshkaConfig,
    MatryoshkaLinear, MatryoshkaLinearConfig, Scaling,
};

fn devices() -> Vec<(BackendKind, Device)> {
    let devices: Vec<_> = BackendKind::compiled_cpu()
        .into_iter()
        .map(|b| (b, b.device().unwrap()))
        .collect();
    assert!(!devices.is_empty(), "no CPU backend compiled");
    devices
}

fn max_abs<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// A layer with random (non-zero) `B`, so the adapter path matters.
fn layer(d_in: usize, d_out: usize, config: MatryoshkaConfig, device: &Device) -> MatryoshkaLinear {
    let mut layer = MatryoshkaLinearConfig::new(d_in, d_out)
        .with_adapter(config)
        .init(device)
        .unwrap();
    let r = layer.adapter.max_rank();
    layer.adapter.lora_b = Param::from_tensor(Tensor::random(
        [r, d_out],
        Distribution::Normal(0.0, 0.5),
        device,
    ));
    layer
}

/// `x W + b + sum_{s in S} s(s) x A[:, :s] B[:s]`, written out.
fn explicit_nested_sum(
    layer: &MatryoshkaLinear,
    x: Tensor<3>,
    ranks: &[usize],
    scaling: Scaling,
) -> Tensor<3> {
    let a = layer.adapter.lora_a.val();
    let b = layer.adapter.lora_b.val();
    let [bs, t, d_in] = x.dims();
    let x2 = x.clone().reshape([bs * t, d_in]);
    let mut y = layer.base.forward(x2.clone());
    for &s in ranks {
        let part = x2
            .clone()
            .matmul(a.clone().slice(s![.., 0..s]))
            .matmul(b.clone().slice(s![0..s, ..]));
        y = y + part * scaling.factor(s);
    }
    let d_out = y.dims()[1];
    y.reshape([bs, t, d_out])
}

#[test]
fn matryoshka_forward_is_the_sum_of_nested_adapters() {
    for (backend, device) in devices() {
        for (max_rank, ranks) in [
            (32, vec![1, 2, 4, 8, 16, 32]),
            (12, vec![1, 3, 5, 10]), // non-power-of-two S, max(S) < R
        ] {
            for scaling in [Scaling::Sqrt, Scaling::Rank, Scaling::Alpha(8.0)] {
                let config = MatryoshkaConfig::new()
                    .with_max_rank(max_rank)
                    .with_ranks(Some(ranks.clone()))
                    .with_scaling(scaling);
                let layer = layer(24, 20, config, &device);
                let x = Tensor::<3>::random([3, 5, 24], Distribution::Default, &device);
                let got = layer.forward(x.clone());
                let want = explicit_nested_sum(&layer, x, &ranks, scaling);
                let err = max_abs(got, want);
                assert!(err < 1e-5, "{backend} R={max_rank} {scaling}: {err}");
            }
        }
    }
}

#[test]
fn lora_and_dylora_forward_follow_their_formulas() {
    for (backend, device) in devices() {
        let x = Tensor::<3>::random([2, 3, 16], Distribution::Default, &device);
        // LoRA: s(R) x A B.
        let lora = layer(
            16,
            8,
            MatryoshkaConfig::new()
                .with_max_rank(8)
                .with_method(AdapterMethod::Lora),
            &device,
        );
        let want = explicit_nested_sum(&lora, x.clone(), &[8], Scaling::Sqrt);
        assert!(
            max_abs(lora.forward(x.clone()), want) < 1e-5,
            "{backend} lora"
        );
        // DyLoRA at drawn b: s(b) x A[:, :b] B[:b].
        let dylora = layer(
            16,
            8,
            MatryoshkaConfig::new()
                .with_max_rank(8)
                .with_method(AdapterMethod::dylora()),
            &device,
        );
        for b in [1, 2, 4, 8] {
            let at_b = dylora
                .clone()
                .with_active_rank(ActiveRank::Rank(b))
                .unwrap();
            let want = explicit_nested_sum(&dylora, x.clone(), &[b], Scaling::Sqrt);
            assert!(
                max_abs(at_b.forward(x.clone()), want) < 1e-5,
                "{backend} dylora b={b}"
            );
        }
    }
}

#[test]
fn forward_at_rank_active_rank_and_merge_agree() {
    for (backend, device) in devices() {
        let ranks = vec![1, 2, 4, 8, 16, 32];
        let layer = layer(40, 24, MatryoshkaConfig::new().with_max_rank(32), &device);
        let x = Tensor::<3>::random([2, 7, 40], Distribution::Default, &device);
        for &k in &ranks {
            let want = explicit_nested_sum(&layer, x.clone(), &[k], Scaling::Sqrt);
            let at_k = layer.forward_at_rank(x.clone(), k).unwrap();
            assert!(
                max_abs(at_k.clone(), want.clone()) < 1e-5,
                "{backend} k={k}"
            );
            let switched = layer.clone().with_active_rank(ActiveRank::Rank(k)).unwrap();
            assert_eq!(switched.adapter.active_components(), k);
            assert!(max_abs(switched.forward(x.clone()), want) < 1e-5);
            let merged = layer.merge(k).unwrap();
            let err = max_abs(merged.forward(x.clone()), at_k);
            assert!(err < 1e-5, "{backend} merge k={k}: {err}");
            // and back to training P
            let back = switched.with_active_rank(ActiveRank::Train).unwrap();
            assert!(max_abs(back.forward(x.clone()), layer.forward(x.clone())) < 1e-6);
        }
    }
}

/// For a loss linear in the output, the Matryoshka gradient equals the sum of
/// the nested rank-s LoRA gradients (the paper's identity); the base gets none.
#[test]
fn gradients_match_the_sum_of_nested_gradients() {
    for (backend, device) in devices() {
        let device = device.autodiff();
        let ranks = vec![1, 2, 4, 8];
        let config = MatryoshkaConfig::new().with_max_rank(8);
        let layer = layer(12, 6, config, &device);
        let x = Tensor::<3>::random([2, 4, 12], Distribution::Default, &device);
        let g = Tensor::<3>::random([2, 4, 6], Distribution::Normal(0.0, 1.0), &device);

        let grads = (layer.forward(x.clone()) * g.clone()).sum().backward();
        let ga = layer.adapter.lora_a.val().grad(&grads).unwrap();
        let gb = layer.adapter.lora_b.val().grad(&grads).unwrap();
        assert!(
            layer.base.weight.val().grad(&grads).is_none(),
            "base weight got a gradient"
        );
        assert!(
            layer
                .base
                .bias
                .as_ref()
                .unwrap()
                .val()
                .grad(&grads)
                .is_none()
        );
        assert!(
            layer.adapter.p.val().grad(&grads).is_none(),
            "P got a gradient"
        );

        let mut sum_a: Option<Tensor<2>> = None;
        let mut sum_b: Option<Tensor<2>> = None;
        for &s in &ranks {
            let out = layer.forward_at_rank(x.clone(), s).unwrap();
            let grads = (out * g.clone()).sum().backward();
            let a = layer.adapter.lora_a.val().grad(&grads).unwrap();
            let b = layer.adapter.lora_b.val().grad(&grads).unwrap();
            sum_a = Some(sum_a.map_or(a.clone(), |t| t + a));
            sum_b = Some(sum_b.map_or(b.clone(), |t| t + b));
        }
        let ea = max_abs(ga, sum_a.unwrap());
        let eb = max_abs(gb, sum_b.unwrap());
        assert!(ea < 1e-5 && eb < 1e-5, "{backend}: dA {ea}, dB {eb}");
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let device = matryoshka_lora::cpu_device();
    let cfg = |r: usize, ranks: Option<Vec<usize>>| {
        MatryoshkaLinearConfig::new(4, 4)
            .with_adapter(MatryoshkaConfig::new().with_max_rank(r).with_ranks(ranks))
            .init(&device)
    };
    assert_eq!(cfg(0, None).unwrap_err(), AdapterError::ZeroMaxRank);
    assert!(matches!(
        cfg(4, Some(vec![])),
        Err(AdapterError::EmptyRanks { .. })
    ));
    assert!(matches!(
        cfg(4, Some(vec![2, 1])),
        Err(AdapterError::UnsortedRanks { .. })
    ));
    assert!(matches!(
        cfg(4, Some(vec![1, 1])),
        Err(AdapterError::UnsortedRanks { .. })
    ));
    assert!(matches!(
        cfg(4, Some(vec![0, 1])),
        Err(AdapterError::ZeroRank { .. })
    ));
    assert!(matches!(
        cfg(4, Some(vec![2, 8])),
        Err(AdapterError::RankAboveMax { rank: 8, .. })
    ));
    let wrong_p = MatryoshkaLinearConfig::new(4, 4)
        .with_adapter(
            MatryoshkaConfig::new()
                .with_max_rank(4)
                .with_method(AdapterMethod::Custom(vec![1.0; 3])),
        )
        .init(&device);
    assert!(matches!(
        wrong_p,
        Err(AdapterError::WrongLength {
            got: 3,
            expected: 4,
            ..
        })
    ));

    let layer = cfg(4, None).unwrap();
    let x = Tensor::<2>::ones([1, 4], &device);
    for k in [0, 5] {
        let err = layer.forward_at_rank(x.clone(), k).unwrap_err();
        assert_eq!(
            err,
            AdapterError::UnusableRank {
                rank: k,
                max_rank: 4
            }
        );
        assert!(err.to_string().contains("1..=4"), "{err}");
        assert!(layer.merge(k).is_err());
        assert!(matches!(
            layer.clone().with_active_rank(ActiveRank::Rank(k)),
            Err(AdapterError::RankSwitch { .. })
        ));
    }
    // wrapping a Linear whose shape disagrees with an adapter
    let other = cfg(4, None).unwrap().adapter;
    let base = burn::nn::LinearConfig::new(5, 4).init(&device);
    let err = MatryoshkaLinear::from_parts(base, other).unwrap_err();
    assert!(matches!(err, AdapterError::ShapeMismatch { .. }), "{err}");
}

#[test]
fn base_is_frozen_and_optimizer_leaves_it_and_p_alone() {
    use burn::optim::{AdamWConfig, GradientsParams};
    let device = matryoshka_lora::cpu_device().autodiff();
    let mut layer = layer(6, 3, MatryoshkaConfig::new().with_max_rank(4), &device);
    let w0 = layer.base.weight.val().into_data();
    let p0 = layer.adapter.p_train.val().into_data();
    let a0 = layer.adapter.lora_a.val().into_data();
    let mut optim = AdamWConfig::new().with_weight_decay(0.1).init();
    let x = Tensor::<2>::random([5, 6], Distribution::Default, &device);
    for _ in 0..3 {
        let loss = layer.forward(x.clone()).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        assert_eq!(grads.len(), 2, "only A and B are trainable");
        layer = optim.step(0.01, layer, grads);
    }
    assert_eq!(layer.base.weight.val().into_data(), w0);
    assert_eq!(layer.adapter.p_train.val().into_data(), p0);
    assert_ne!(layer.adapter.lora_a.val().into_data(), a0);
}

/// Original DyLoRA at rank b: the rank-b output, but only component b learns.
#[test]
fn dylora_original_detaches_components_below_b() {
    for (backend, device) in devices() {
        let device = device.autodiff();
        let config = MatryoshkaConfig::new()
            .with_max_rank(8)
            .with_method(AdapterMethod::DyLora {
                variant: matryoshka_lora::DyLoraVariant::Original,
            });
        let layer = layer(10, 6, config, &device);
        let x = Tensor::<3>::random([2, 3, 10], Distribution::Default, &device);
        let b = 5;
        let step = layer
            .clone()
            .with_active_rank(ActiveRank::Component(b))
            .unwrap();
        let want = layer.forward_at_rank(x.clone(), b).unwrap();
        assert!(max_abs(step.forward(x.clone()), want) < 1e-6, "{backend}");
        let grads = step.forward(x).sum().backward();
        let ga = step.adapter.lora_a.val().grad(&grads).unwrap();
        let gb = step.adapter.lora_b.val().grad(&grads).unwrap();
        let col = |g: &Tensor<2>, j: usize| {
            g.clone()
                .slice(s![.., j..j + 1])
                .abs()
                .max()
                .into_scalar::<f32>()
        };
        let row = |g: &Tensor<2>, j: usize| {
            g.clone()
                .slice(s![j..j + 1, ..])
                .abs()
                .max()
                .into_scalar::<f32>()
        };
        for j in 0..8 {
            let (a, bb) = (col(&ga, j), row(&gb, j));
            if j == b - 1 {
                assert!(a > 0.0 && bb > 0.0, "{backend}: component {b} must learn");
            } else {
                assert_eq!(
                    (a, bb),
                    (0.0, 0.0),
                    "{backend}: component {} must not learn",
                    j + 1
                );
            }
        }
        // back to training P clears the mask
        let back = step.with_active_rank(ActiveRank::Train).unwrap();
        assert_eq!(back.adapter.grad_mask.val().dims(), [1]);
    }
}
