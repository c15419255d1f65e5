//! `examples/custom_task.rs` as a test: a task written by a user of the
//! library trains above chance at rank R through the runner, and its report's
//! AURAC is the one recomputed from its per-rank figures.

#[path = "../examples/custom_task.rs"]
mod custom_task;

use matryoshka_lora::train::TrainMethod;

#[test]
fn a_user_task_trains_through_the_runner() {
    let reports = custom_task::run(&[TrainMethod::Lora, TrainMethod::Matryoshka]).unwrap();
    for report in &reports {
        println!(
            "{}: {:?} AURAC {:.2}",
            report.method,
            report.curve(),
            report.aurac_log2
        );
        assert_eq!(report.task, "quadrants");
        assert_eq!(report.ranks, [1, 2, 4, 8, 16]);
        assert_eq!(
            report.config.train.targets,
            Some(vec!["fc1".into(), "fc2".into()])
        );
        // 4 balanced classes: chance is 25 %
        let at_r = *report.curve().last().unwrap();
        assert!(
            at_r > 60.0,
            "{}: rank-16 accuracy {at_r:.1}%",
            report.method
        );
        let (log2, linear) = report.recomputed_aurac().unwrap();
        assert!((log2 - report.aurac_log2).abs() < 1e-9);
        assert!((linear - report.aurac_linear).abs() < 1e-9);
    }
}
