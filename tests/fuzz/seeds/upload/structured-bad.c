bad.ccafÃ
