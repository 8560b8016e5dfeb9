# The entry points named in the README. Each does its own set-up on a fresh Debian 12 machine.
.PHONY: demo test bench bench-redirect bench-attribution bench-metrics bench-retention accuracy fuzz

demo:   ## build, start a local cluster, prepare and deliver a 10,000-message campaign
	bash scripts/demo.sh

test:   ## every test tier; ends with a SUMMARY line, non-zero on failure
	bash scripts/test.sh

bench:  ## token codec, prepare_messages, choose_variant, track_click and incrementality, as ratios against same-run baselines
	bash scripts/bench.sh

bench-redirect:  ## the click path over HTTP vs pgbench, nginx and forged-token ceilings (wrk)
	bash scripts/bench-redirect.sh

bench-attribution:  ## attribute() over a month of a generated 10M-message year vs hand-written SQL
	bash scripts/bench-history.sh attribution

bench-metrics:  ## the metric functions on the generated history vs hand-written SQL (1M-message campaign)
	bash scripts/bench-history.sh metrics

bench-retention:  ## apply_retention on a copy of the generated history vs hand-written SQL; metrics identical before and after
	bash scripts/bench-history.sh retention

accuracy:  ## the click classifier's precision and recall on the evaluation corpus and scenarios
	cargo test -q -p smslink-core --test accuracy -- --nocapture

fuzz:  ## 10 million generated inputs per parser (tokens, URLs, postbacks, User-Agents, segments): zero panics
	SMSLINK_FUZZ_CASES=$${SMSLINK_FUZZ_CASES:-10000000} SMSLINK_FUZZ_SECONDS=$${SMSLINK_FUZZ_SECONDS:-3000} \
	  cargo test -q -p smslink-core --release --test fuzz -- --nocapture --test-threads 1
