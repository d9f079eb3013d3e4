"""Which digits and seeds are for calibration / training and which for evaluation: never the same.

Schedules are calibrated and Ada policies trained on classes 7-9 with their own seed; the benchmark
evaluates on classes 0-6 with another. Classes play the role of prompts here."""
EVAL_CLASSES = tuple(range(7))
CALIBRATION_CLASSES = (7, 8, 9)
EVAL_SEED = 7
CALIBRATION_SEED = 101
CALIBRATION_PER_CLASS = 2
STEPS = 30
CFG = 2.0
SCHEDULER = "simple"
SAMPLERS = ("euler", "euler_ancestral")
TARGETS = (1.25, 1.5, 2.0, 2.5, 3.0)
