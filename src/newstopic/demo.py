"""The embedded demo dataset: synthetic Korean headlines in the Dacon format.

Not real news: each title is drawn from a small topic vocabulary mixed with words shared by
all topics (and, in a few rows, a word of another topic), so a model must learn which words
carry the topic. It exists so that the workflow runs on a fresh clone with no downloads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from newstopic.atomic import atomic_path

TOPICS = ["IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"]

TOPIC_WORDS = [
    "스마트폰 인공지능 반도체 5G 클라우드 소프트웨어 로봇 우주 과학자 연구팀 앱 게임 통신사 갤럭시 데이터 보안 해킹 네이버 카카오 AI 드론 배터리 칩 메타버스 플랫폼 서버 알고리즘 위성 백신개발 유전자",
    "코스피 금리 환율 주가 수출 부동산 증시 투자 은행 물가 대출 기업 실적 매출 원화 채권 경기 아파트값 무역 한은 증권 펀드 세금 성장률 유가 달러 영업이익 시총 상장 IPO",
    "경찰 검찰 사고 화재 법원 재판 구속 혐의 학교 학생 교사 피해자 수사 시민 노조 파업 병원 코로나 확진 날씨 폭우 지진 대학 입시 교육청 소방 범죄 실종 판결 징역",
    "영화 공연 전시 음악 축제 여행 드라마 작가 배우 가수 책 미술관 박물관 문화재 콘서트 뮤지컬 요리 건강 패션 관광 신간 시상식 연극 오페라 한류 K팝 걸그룹 방송 예능 출판",
    "미국 중국 일본 트럼프 시진핑 유엔 유럽 러시아 이란 시리아 영국 프랑스 독일 총리 대선 테러 난민 외무 백악관 EU 나토 인도 브라질 홍콩 대만 아베 바이든 푸틴 中 美",
    "축구 야구 농구 배구 골프 올림픽 월드컵 감독 선수 우승 경기 리그 KBO 홈런 득점 손흥민 류현진 국가대표 결승 메달 프로 시즌 승리 패배 구단 투수 타자 챔피언 K리그 MVP",
    "대통령 국회 여당 야당 의원 장관 총선 청와대 민주당 국민의힘 북한 김정은 정부 국무총리 선거 후보 공천 개헌 외교 국방 통일부 정상회담 비핵화 탄핵 국정감사 법안 대변인 당대표 靑 北",
]
SHARED_WORDS = [
    "종합",
    "속보",
    "오늘",
    "내일",
    "올해",
    "내년",
    "첫",
    "최대",
    "최고",
    "발표",
    "추진",
    "확대",
    "논란",
    "결정",
    "전망",
    "계획",
    "개최",
    "시작",
    "관련",
    "참석",
    "공개",
    "사상",
    "지원",
    "강화",
    "우려",
    "가능성",
    "기대",
    "대책",
    "회의",
    "현장",
    "인터뷰",
    "2보",
    "3보",
    "이번",
    "주",
]
SUFFIXES = ["", "", "…", "종합", "1보", "2보", "(종합)"]


def make_titles(n_per_topic: int, seed: int, noise: float = 0.12) -> pd.DataFrame:
    """`n_per_topic` titles for each of the 7 topics, shuffled; columns title, topic_idx."""
    rng = np.random.default_rng(seed)
    words = [w.split() for w in TOPIC_WORDS]
    rows = []
    for topic, vocab in enumerate(words):
        for _ in range(n_per_topic):
            k_topic = rng.integers(1, 4)
            k_shared = rng.integers(1, 4)
            parts = list(rng.choice(vocab, size=k_topic, replace=False))
            parts += list(rng.choice(SHARED_WORDS, size=k_shared, replace=False))
            if rng.random() < noise:  # a misleading word from another topic
                other = (topic + rng.integers(1, len(words))) % len(words)
                parts.append(str(rng.choice(words[other])))
            rng.shuffle(parts)
            title = " ".join(parts) + " " + str(rng.choice(SUFFIXES))
            rows.append((title.strip(), topic))
    df = pd.DataFrame(rows, columns=["title", "topic_idx"])
    return df.iloc[rng.permutation(len(df))].reset_index(drop=True)


def write_demo_data(
    out_dir: str | Path, n_train_per_topic: int = 200, n_test_per_topic: int = 50, seed: int = 2021
) -> None:
    """Write demo_train.csv, demo_test.csv, demo_sample_submission.csv, demo_topic_dict.csv (Dacon format)."""
    out = Path(out_dir)
    data = make_titles(n_train_per_topic + n_test_per_topic, seed)
    n_train = n_train_per_topic * len(TOPICS)
    train = data.iloc[:n_train].reset_index(drop=True)
    test = data.iloc[n_train:].reset_index(drop=True)
    train.insert(0, "index", np.arange(len(train)))
    test.insert(0, "index", np.arange(len(train), len(train) + len(test)))
    files = {
        "demo_train.csv": train[["index", "title", "topic_idx"]],
        "demo_test.csv": test[["index", "title"]],
        "demo_sample_submission.csv": test[["index"]].assign(topic_idx=0),
        "demo_topic_dict.csv": pd.DataFrame({"topic": TOPICS, "topic_idx": range(len(TOPICS))}),
    }
    for name, frame in files.items():
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False, lineterminator="\n")


def main(argv: list[str] | None = None) -> None:
    """python -m newstopic.demo: regenerate data/demo/ (deterministic)."""
    import argparse

    parser = argparse.ArgumentParser(description="Regenerate the embedded demo dataset (deterministic).")
    parser.add_argument("--out", default="data/demo")
    parser.add_argument("--train-per-topic", type=int, default=200)
    parser.add_argument("--test-per-topic", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args(argv)
    write_demo_data(args.out, args.train_per_topic, args.test_per_topic, args.seed)


if __name__ == "__main__":
    main()
